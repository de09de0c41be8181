from django.urls import path

from dependencies import views

# Mounted under /o/<org_slug>/ by config.urls. The team matrix lives in escalations (it reads the reviews).
app_name = "dependencies"
urlpatterns = [
    path("dependencies/", views.dependency_graph, name="dependency_graph"),
    path("dependencies/kpis/<int:kpi_id>/", views.dependency_neighbourhood, name="dependency_neighbourhood"),
    path("dependencies/kpis/<int:kpi_id>/add/", views.dependency_add, name="dependency_add"),
    path("dependencies/<int:dependency_id>/delete/", views.dependency_delete, name="dependency_delete"),
]

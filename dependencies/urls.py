from django.urls import path

from dependencies import suggestion_views, views

# Mounted under /o/<org_slug>/ by config.urls. The team matrix lives in escalations (it reads the reviews).
app_name = "dependencies"
urlpatterns = [
    path("dependencies/", views.dependency_graph, name="dependency_graph"),
    path("dependencies/kpis/<int:kpi_id>/", views.dependency_neighbourhood, name="dependency_neighbourhood"),
    path("dependencies/kpis/<int:kpi_id>/add/", views.dependency_add, name="dependency_add"),
    path("dependencies/<int:dependency_id>/delete/", views.dependency_delete, name="dependency_delete"),
    path("dependencies/suggestions/", suggestion_views.suggestion_list, name="suggestion_list"),
    path("dependencies/suggestions/<int:suggestion_id>/", suggestion_views.suggestion_detail, name="suggestion_detail"),
    path(
        "dependencies/suggestions/<int:suggestion_id>/confirm/",
        suggestion_views.suggestion_confirm,
        name="suggestion_confirm",
    ),
    path(
        "dependencies/suggestions/<int:suggestion_id>/dismiss/",
        suggestion_views.suggestion_dismiss,
        name="suggestion_dismiss",
    ),
]

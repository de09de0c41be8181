from django.urls import path

from escalations.reporting import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/. Executives and admins, but the what-if.
urlpatterns = [
    # The team dependency matrix reads the dependency reviews, hence this app (the graph pages are dependencies').
    path("dependencies/matrix/", views.dependency_matrix, name="dependency_matrix"),
    path("health/", views.governance_health, name="governance_health"),
    path("kpis/<int:kpi_id>/what-if/", views.kpi_what_if, name="kpi_what_if"),
]

from django.urls import path

from escalations.reporting import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/. Executives and admins, but the what-if.
urlpatterns = [
    # The team dependency matrix reads the dependency reviews, hence this app (the graph pages are dependencies').
    path("dependencies/matrix/", views.dependency_matrix, name="dependency_matrix"),
    path("health/", views.governance_health, name="governance_health"),
    path("reports/", views.subscription_list, name="subscription_list"),
    path("reports/new/", views.subscription_edit, name="subscription_create"),
    path("reports/<int:subscription_id>/", views.subscription_edit, name="subscription_edit"),
    path("reports/<int:subscription_id>/delete/", views.subscription_delete, name="subscription_delete"),
    path("kpis/<int:kpi_id>/what-if/", views.kpi_what_if, name="kpi_what_if"),
]

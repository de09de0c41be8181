from django.urls import path

from scorecards import views
from scorecards.ingestion import views as ingestion_views

# Mounted under /o/<org_slug>/ by config.urls.
app_name = "scorecards"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("kpis/", views.scorecard, name="kpi_list"),
    path("kpis/new/", views.kpi_create, name="kpi_create"),
    path("kpis/<int:kpi_id>/", views.kpi_detail, name="kpi_detail"),
    path("kpis/<int:kpi_id>/settings/", views.kpi_settings, name="kpi_settings"),
    path("kpis/<int:kpi_id>/transfer/", views.transfer_request, name="transfer_request"),
    path("transfers/<int:transfer_id>/cancel/", views.transfer_cancel, name="transfer_cancel"),
    path("scorecards/<int:scorecard_id>/", views.scorecard, name="scorecard"),
    path("okrs/", views.okr_tree, name="okr_tree"),
    path("okrs/<int:objective_id>/edit/", views.objective_edit, name="objective_edit"),
    path("okrs/<int:objective_id>/key-results/", views.key_result_create, name="key_result_create"),
    path("key-results/<int:key_result_id>/check-in/", views.key_result_check_in, name="key_result_check_in"),
    path("me/", views.my_work, name="my_work"),
    path("data-sources/", ingestion_views.data_sources, name="data_sources"),
    path("data-sources/new/", ingestion_views.data_source_new, name="data_source_new"),
    path("data-sources/test/", ingestion_views.data_source_test, name="data_source_test"),
    path("data-sources/<int:source_id>/", ingestion_views.data_source, name="data_source"),
    path("data-sources/<int:source_id>/edit/", ingestion_views.data_source_edit, name="data_source_edit"),
    path("data-sources/<int:source_id>/test/", ingestion_views.data_source_test_saved, name="data_source_test_saved"),
    path("data-sources/<int:source_id>/pause/", ingestion_views.data_source_pause, name="data_source_pause"),
    path("data-sources/<int:source_id>/delete/", ingestion_views.data_source_delete, name="data_source_delete"),
    path("data-sources/<int:source_id>/run/", ingestion_views.data_source_run, name="data_source_run"),
    path("import/", ingestion_views.measurement_import, name="measurement_import"),
    path("import/<int:job_id>/", ingestion_views.measurement_import_job, name="measurement_import_job"),
]

from django.urls import path

from escalations.decisions import manual_values, views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/: the executive review and the
# decision log.
urlpatterns = [
    path("review/", views.review_agenda, name="review_agenda"),
    path("review/kpis/<int:kpi_id>/decide/", views.review_decide, name="review_decide"),
    path("review/sessions/", views.review_session_list, name="review_session_list"),
    path("review/sessions/start/", views.review_session_start, name="review_session_start"),
    path("review/sessions/<int:session_id>/", views.review_session_detail, name="review_session_detail"),
    path(
        "review/sessions/<int:session_id>/attendees/", views.review_session_attendees, name="review_session_attendees"
    ),
    path("review/sessions/<int:session_id>/close/", views.review_session_close, name="review_session_close"),
    path("review/sessions/<int:session_id>/schedule/", views.review_session_schedule, name="review_session_schedule"),
    path("review/sessions/<int:session_id>/cancel/", views.review_session_cancel, name="review_session_cancel"),
    path("review/sessions/<int:session_id>/pack.pdf", views.review_session_pack, name="review_session_pack"),
    path("review/sessions/<int:session_id>/pack.<str:fmt>", views.review_session_pack, name="review_session_pack_as"),
    path("decisions/", views.decision_log, name="decision_log"),
    # An ownership transfer is decided here (the KPI page's form), where the decision log is written.
    path("transfers/<int:transfer_id>/decide/", views.transfer_decide, name="transfer_decide"),
    # A manual KPI's values: entered on its page, confirmed there or from the approver's inbox task.
    path("kpis/<int:kpi_id>/manual/", manual_values.manual_values, name="manual_values"),
    path("kpis/<int:kpi_id>/manual/enter/", manual_values.manual_value_enter, name="manual_value_enter"),
    path("manual-values/<int:value_id>/decide/", manual_values.manual_value_decide, name="manual_value_decide"),
    path("kpis/<int:kpi_id>/decisions/", views.kpi_decisions, name="kpi_decisions"),
    path("workstreams/<int:workstream_id>/decisions/", views.workstream_decisions, name="workstream_decisions"),
]

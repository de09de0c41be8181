from django.urls import path

# Mounted under /o/<org_slug>/ by config.urls.
from escalations.decisions import views as review_views
from escalations.reporting import views as health_views

# Mounted under /o/<org_slug>/ by config.urls.
from escalations.workstreams import views

# Mounted under /o/<org_slug>/ by config.urls.
urlpatterns = [
    path("workstreams/", views.workstream_list, name="workstream_list"),
    path("workstreams/<int:workstream_id>/", views.workstream_detail, name="workstream_detail"),
    path("workstreams/<int:workstream_id>/path/", views.mitigation_path_file, name="mitigation_path_file"),
    path("workstreams/<int:workstream_id>/close/", views.workstream_close, name="workstream_close"),
    path("paths/<int:path_id>/review/", views.mitigation_path_review, name="mitigation_path_review"),
    path("actions/<int:action_id>/update/", views.action_update, name="action_update"),
    path("tasks/<int:task_id>/acknowledge/", views.task_acknowledge, name="task_acknowledge"),
    path("tasks/<int:task_id>/answer/", views.task_answer, name="task_answer"),
    path("inbox/", views.task_inbox, name="task_inbox"),
    path("notifications/", views.notification_list, name="notification_list"),
    path("notifications/read/", views.notification_read_all, name="notification_read_all"),
    path("notifications/settings/", views.notification_settings, name="notification_settings"),
    path("notifications/<int:notification_id>/read/", views.notification_read, name="notification_read"),
]

# Escalation policies and webhooks: admins only.
urlpatterns += [
    path("escalation/", views.policy_list, name="policy_list"),
    path("escalation/new/", views.policy_create, name="policy_create"),
    path("escalation/defaults/", views.policy_defaults, name="policy_defaults"),
    path("escalation/preview/", views.policy_preview, name="policy_preview"),
    path("escalation/<int:policy_id>/", views.policy_edit, name="policy_edit"),
    path("escalation/<int:policy_id>/archive/", views.policy_archive, name="policy_archive"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/<int:webhook_id>/", views.webhook_detail, name="webhook_detail"),
]

# The team dependency matrix: executives and admins (it reads the dependency reviews, hence this app).
urlpatterns += [
    path("dependencies/matrix/", views.dependency_matrix, name="dependency_matrix"),
]

# Governance health: executives and admins (escalations.reporting.views).
urlpatterns += [
    path("health/", health_views.governance_health, name="governance_health"),
]

# The executive review and the decision log (escalations.decisions.views).
urlpatterns += [
    path("review/", review_views.review_agenda, name="review_agenda"),
    path("review/kpis/<int:kpi_id>/decide/", review_views.review_decide, name="review_decide"),
    path("review/sessions/", review_views.review_session_list, name="review_session_list"),
    path("review/sessions/start/", review_views.review_session_start, name="review_session_start"),
    path("review/sessions/<int:session_id>/", review_views.review_session_detail, name="review_session_detail"),
    path(
        "review/sessions/<int:session_id>/attendees/",
        review_views.review_session_attendees,
        name="review_session_attendees",
    ),
    path("review/sessions/<int:session_id>/close/", review_views.review_session_close, name="review_session_close"),
    path("review/sessions/<int:session_id>/pack.pdf", review_views.review_session_pack, name="review_session_pack"),
    path("decisions/", review_views.decision_log, name="decision_log"),
    # An ownership transfer is decided here (the KPI page's form), where the decision log is written.
    path("transfers/<int:transfer_id>/decide/", review_views.transfer_decide, name="transfer_decide"),
    path("kpis/<int:kpi_id>/decisions/", review_views.kpi_decisions, name="kpi_decisions"),
    path("workstreams/<int:workstream_id>/decisions/", review_views.workstream_decisions, name="workstream_decisions"),
]

from django.urls import path

from escalations.workstreams import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/.
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
]

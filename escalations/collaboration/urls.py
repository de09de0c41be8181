from django.urls import path

from escalations.collaboration import views

app_name = "collaboration"

urlpatterns = [
    path("comments/<str:target>/<int:object_id>/", views.comment_list, name="comment_list"),
    path("comments/<int:comment_id>/edit/", views.comment_edit, name="comment_edit"),
    path("comments/<int:comment_id>/delete/", views.comment_delete, name="comment_delete"),
    path("mentions/", views.mention_suggestions, name="mention_suggestions"),
    path("attachments/<str:target>/<int:object_id>/", views.attachment_list, name="attachment_list"),
    path("attachments/<int:attachment_id>/", views.attachment_download, name="attachment_download"),
    path("attachments/<int:attachment_id>/delete/", views.attachment_delete, name="attachment_delete"),
    path("decisions/<int:decision_id>/", views.decision_detail, name="decision_detail"),
    path("share-links/", views.share_link_list, name="share_link_list"),
    path("share-links/<int:link_id>/revoke/", views.share_link_revoke, name="share_link_revoke"),
    path("tv/", views.tv, name="tv"),
]

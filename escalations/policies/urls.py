from django.urls import path

from escalations.policies import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/. Admins only.
urlpatterns = [
    path("escalation/", views.policy_list, name="policy_list"),
    path("escalation/new/", views.policy_create, name="policy_create"),
    path("escalation/defaults/", views.policy_defaults, name="policy_defaults"),
    path("escalation/preview/", views.policy_preview, name="policy_preview"),
    path("escalation/<int:policy_id>/", views.policy_edit, name="policy_edit"),
    path("escalation/<int:policy_id>/archive/", views.policy_archive, name="policy_archive"),
]

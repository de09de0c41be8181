from django.urls import path

from escalations.notify import admin_views, views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/. Webhooks, Microsoft Teams and the
# delivery log: admins only.
urlpatterns = [
    path("notifications/", views.notification_list, name="notification_list"),
    path("notifications/read/", views.notification_read_all, name="notification_read_all"),
    path("notifications/settings/", views.notification_settings, name="notification_settings"),
    path("notifications/<int:notification_id>/read/", views.notification_read, name="notification_read"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/<int:webhook_id>/", views.webhook_detail, name="webhook_detail"),
    path("microsoft-teams/", admin_views.teams_settings, name="teams_settings"),
    path("deliveries/", admin_views.delivery_log, name="delivery_log"),
]

from django.urls import path

from escalations.notify import views

# Included by escalations.urls (namespace "escalations"), under /o/<org_slug>/. Webhooks: admins only.
urlpatterns = [
    path("notifications/", views.notification_list, name="notification_list"),
    path("notifications/read/", views.notification_read_all, name="notification_read_all"),
    path("notifications/settings/", views.notification_settings, name="notification_settings"),
    path("notifications/<int:notification_id>/read/", views.notification_read, name="notification_read"),
    path("webhooks/", views.webhook_list, name="webhook_list"),
    path("webhooks/<int:webhook_id>/", views.webhook_detail, name="webhook_detail"),
]

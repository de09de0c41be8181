from django.apps import AppConfig


class CollaborationConfig(AppConfig):
    name = "escalations.collaboration"
    label = "collaboration"  # its tables and row-level security policies are collaboration_*
    verbose_name = "Comments, attachments and share links"

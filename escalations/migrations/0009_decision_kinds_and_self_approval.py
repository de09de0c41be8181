"""Decisions take the API's kind names, learn whether they were self-approved, and the decisions taken before every
decision was logged (paths reviewed on the workstream page or through the API, workstreams closed, transfers
decided, dependency reviews answered "no impact") join the log, each with its decider and time."""

from django.db import migrations, models

RENAMED = {
    "approve_path": "path_approved",
    "reject_path": "path_rejected",
    "accept_risk": "risk_accepted",
    "change_target": "target_changed",
    "transfer_owner": "transfer_requested",
    "assign_action": "action_assigned",
}
# Decision has a non-empty-reason constraint; before decisions were logged, an approval needed no comment.
NO_REASON = "(no reason recorded before decisions were logged)"


def forwards(apps, schema_editor):
    Decision = apps.get_model("escalations", "Decision")
    MitigationPath = apps.get_model("escalations", "MitigationPath")
    Workstream = apps.get_model("escalations", "Workstream")
    DependencyReview = apps.get_model("escalations", "DependencyReview")
    OwnershipTransfer = apps.get_model("scorecards", "OwnershipTransfer")
    for old, new in RENAMED.items():
        Decision.objects.filter(kind=old).update(kind=new)
    logged_paths = set(Decision.objects.exclude(path=None).values_list("path_id", flat=True))
    rows = []
    paths = MitigationPath.objects.filter(state__in=["approved", "rejected"]).exclude(reviewed_by=None)
    for path in paths.exclude(pk__in=logged_paths).select_related("workstream"):
        ws = path.workstream
        approved = path.state == "approved"
        rows.append(
            Decision(
                organization_id=path.organization_id,
                kind="path_approved" if approved else "path_rejected",
                kpi_id=ws.kpi_id,
                workstream=ws,
                decided_by_id=path.reviewed_by_id,
                decided_at=path.reviewed_at or path.filed_at,
                reason=path.review_comment.strip() or NO_REASON,
                kpi_status=ws.severity,  # the KPI's status then: the episode's
                payload={"root_cause": path.root_cause, "expected_recovery": path.expected_recovery.isoformat()},
                expected_by=path.expected_recovery if approved else None,
                path=path,
            )
        )
    logged_closings = set(Decision.objects.filter(kind="workstream_closed").values_list("workstream_id", flat=True))
    for ws in Workstream.objects.exclude(closed_by=None).exclude(pk__in=logged_closings):
        rows.append(
            Decision(
                organization_id=ws.organization_id,
                kind="workstream_closed",
                kpi_id=ws.kpi_id,
                workstream=ws,
                decided_by_id=ws.closed_by_id,
                decided_at=ws.resolved_at or ws.opened_at,
                reason=ws.resolution_reason.strip() or NO_REASON,
                kpi_status=ws.severity,
                payload={"resolution": ws.resolution},
            )
        )
    logged_transfers = set(Decision.objects.filter(kind="transfer_decided").values_list("transfer_id", flat=True))
    transfers = OwnershipTransfer.objects.filter(state__in=["approved", "rejected"]).exclude(decided_by=None)
    # A manifest's direct owner change is recorded as a transfer approved when requested: no decision was taken.
    for t in transfers.exclude(pk__in=logged_transfers).exclude(decided_at=models.F("requested_at")).select_related(
        "kpi", "from_owner__user", "to_owner__user"
    ):
        rows.append(
            Decision(
                organization_id=t.organization_id,
                kind="transfer_decided",
                kpi_id=t.kpi_id,
                decided_by_id=t.decided_by_id,
                decided_at=t.decided_at,
                reason=t.decision_note.strip() or NO_REASON,
                kpi_status=t.kpi.status,
                payload={
                    "approved": t.state == "approved",
                    "from_owner": f"{t.from_owner.user.name} <{t.from_owner.user.email}>",
                    "to_owner": f"{t.to_owner.user.name} <{t.to_owner.user.email}>",
                },
                transfer=t,
            )
        )
    logged_reviews = {
        r for r in Decision.objects.filter(kind="review_no_impact").values_list("payload__review", flat=True) if r
    }
    answered = DependencyReview.objects.filter(answer="no_impact").exclude(answered_by=None)
    for review in answered.exclude(pk__in=logged_reviews).select_related("kpi"):
        rows.append(
            Decision(
                organization_id=review.organization_id,
                kind="review_no_impact",
                kpi_id=review.kpi_id,
                decided_by_id=review.answered_by_id,
                decided_at=review.answered_at,
                reason=review.answer_reason.strip() or NO_REASON,
                kpi_status=review.kpi.status,
                payload={"review": review.pk},
            )
        )
    Decision.objects.bulk_create(rows, batch_size=500)


def backwards(apps, schema_editor):
    Decision = apps.get_model("escalations", "Decision")
    Decision.objects.filter(kind__in=["workstream_closed", "transfer_decided", "review_no_impact"]).delete()
    for old, new in RENAMED.items():
        Decision.objects.filter(kind=new).update(kind=old)


class Migration(migrations.Migration):
    dependencies = [
        ("escalations", "0008_prune_indexes"),
        ("scorecards", "0007_kpi_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="decision",
            name="self_approved",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="decision",
            name="kind",
            field=models.CharField(
                choices=[
                    ("path_approved", "Approved the mitigation path"),
                    ("path_rejected", "Rejected the mitigation path"),
                    ("workstream_closed", "Closed the workstream"),
                    ("risk_accepted", "Accepted the risk"),
                    ("target_changed", "Changed the target"),
                    ("transfer_decided", "Decided an ownership transfer"),
                    ("review_no_impact", "Answered a dependency review: no impact"),
                    ("transfer_requested", "Requested an ownership transfer"),
                    ("action_assigned", "Assigned an action"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]

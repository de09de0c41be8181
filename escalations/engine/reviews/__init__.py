"""Dependency reviews (SEMANTICS.md section 4): what happens upstream reaches the direct downstream owners.

Durable rows carry it from sweep to sweep, as everywhere in the engine:

- process_status_changes turns each official change into at_risk/off_track/stale of a KPI with downstream edges,
  and each surge (SurgeSignal, claimed as status changes are), into a DependencySignal, in the transaction that
  marks the outbox row processed;
- a later phase of the same sweep propagates the signals, a batch at a time, over the direct edges: each (signal,
  downstream KPI) becomes a DependencyReviewSignal that opens a review of that KPI, joins its unanswered one, or is
  throttled by the review the same upstream reached within the edge's lag (24 h without one);
- reviews group per downstream owner: everything reaching one owner within GROUP_WINDOW of the first review of a
  window is one task (kind dependency_review) listing one review per affected KPI, each answered on its own
  ("impact" on one and "no impact" on another is a fine answer); the task is done when every review is;
- advance_escalations escalates each unanswered review level by level from next_escalation_at, as it does
  workstreams; follow_owners hands unanswered reviews to their KPI's new owner.

Concurrency: a propagation batch holds its downstream KPIs' rows (FOR NO KEY UPDATE, in id order, nothing else locked
first), and so does an answer (escalations.workstreams.services.dependency_review_answer), so grouping and throttling
decide on one KPI's reviews one at a time; it then holds the owners' membership rows (NO KEY UPDATE, id order), so two
batches never open two tasks for one owner's window. Signals are claimed with SKIP LOCKED and marked in the same
transaction."""

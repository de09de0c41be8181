"""The organization manifest (MANIFEST.md): validate a whole document, plan the changes, apply them at once.

Each app describes its part of the document as a `Section`. `engine.SECTIONS` lists them by dotted path in layer
order (governance <- scorecards <- dependencies <- escalations) and they are imported lazily, so this package
imports no app to its right. One apply runs these steps over every section:

1. collect: each section names the keys its list declares, plus the live ones in the database (only the
   declared ones under prune, since the others are about to be archived), so that a reference from any
   section is checked against the document and the database alike;
2. validate: each entry becomes its canonical form (defaults filled in, durations spelled by
   format_duration, dates ISO, numbers without a needless ".0"); every problem is recorded with its path,
   nothing stops at the first one;
3. plan: the canonical form of each stored object is compared field by field with the document's;
4. apply: only when there is no error, in one transaction, through each app's services where one exists
   (they write their own audit events); the rest is audit-logged here, and one `manifest.applied` event per
   apply that changed anything carries the checksum and the counts.

The export is the canonical form of the stored objects minus the fields equal to their defaults, so that
export -> apply changes nothing. Missing optional fields mean their default (the manifest is declarative):
leaving out `lead` removes a team's lead.

Governance's own part, decided where MANIFEST.md is silent:
- `organization.slug` names the organization and cannot be changed by a manifest; `timezone` defaults to UTC
  and `business_hours` to mon-fri 09:00-17:00 (times are "HH:MM" strings).
- `members[].name` is informational: a user's account is shared by every organization they belong to, so an
  organization's manifest does not rename people. It is exported from the account.
- A member always belongs to the teams they lead (as in team_update), so those count as listed.
- Emails without a membership are invited (a pending invitation with another role or teams is replaced);
  a deactivated member named in a manifest is an error: reactivating someone is a decision for the app.
- Teams and members are never pruned; under prune the diff lists them as skipped.

The modules, in the order a reader meets them:
- `engine`: apply_manifest and export_manifest, the steps above, and `SECTIONS`;
- `context`: what one apply shares (`Context`), the planned `Change`s, the `Result` and its errors;
- `sections`: `Section` and `KeyedSection`, the base classes every app's part of the document extends;
- `fields`: `Entry`, which reads one mapping field by field into its canonical form;
- `targets`: members, teams and escalation targets a document may name (`target_checker` for the app's forms);
- `graph`: paths, cycles and parents-first order along references;
- `document`: the YAML/JSON text in (parse, with its size limits) and out (dump_yaml); `diff`: the text diff;
- `organization`, `teams`, `members`: governance's own sections.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from scorecards.connectors.registry import CONNECTORS
from scorecards.ingestion.source_edit import FORM_FIELDS, data_source_check
from scorecards.tables import is_workbook

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")


class MeasurementImportForm(forms.Form):
    file = forms.FileField(
        label="CSV, TSV or Excel file",
        widget=forms.FileInput(attrs={"accept": ".csv,.tsv,.txt,.xlsx,text/csv,text/tab-separated-values"}),
        error_messages={
            "required": "Choose a CSV, TSV or .xlsx file.",
            "empty": "The file is empty; it needs the header line kpi,at,value and one line per measurement.",
        },
    )
    sheet = forms.CharField(
        label="Sheet",
        max_length=100,
        required=False,
        help_text="Of an .xlsx workbook: the sheet to read. Empty: the first one.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is {filesizeformat(settings.IMPORT_MAX_BYTES)}. "
                "Split it into smaller files."
            )
        name = upload.name.lower()
        head = upload.read(8192)
        upload.seek(0)
        if name.endswith(".xlsx"):
            if not is_workbook(head):
                raise forms.ValidationError(f'"{upload.name}" is not an Excel workbook. Save it as .xlsx again.')
            return upload
        if not name.endswith(TEXT_SUFFIXES):
            raise forms.ValidationError(
                f'"{upload.name}" is neither a .csv, .tsv nor an .xlsx file. Save the sheet as "CSV UTF-8" or .xlsx.'
            )
        # Text never holds a NUL byte; a workbook or PDF renamed .csv does, and would fail on every line.
        if b"\x00" in head:
            raise forms.ValidationError(
                f'"{upload.name}" is not a CSV text file (a spreadsheet workbook?). Save the sheet as "CSV UTF-8".'
            )
        return upload


SQL_EXAMPLE = """dsn_secret: warehouse_url
pulls:
  - kpi: sales.revenue
    query: select day as at, revenue as value from daily where day > :since
"""


class DataSourceForm(forms.Form):
    """A data source as the manifest writes it: key, kind, schedule and threshold here, the kind's own fields and
    its pulls as YAML in `settings`; all of it checked by the manifest's section (source_edit.data_source_check)."""

    key = forms.CharField(max_length=64, help_text="Lower-case letters, digits, dots, dashes: warehouse, crm.leads")
    kind = forms.ChoiceField(choices=())
    every = forms.CharField(max_length=20, initial="1h", help_text="How often it is pulled: 15m, 1h, 1d")
    task_after = forms.IntegerField(
        label="Task after",
        min_value=1,
        max_value=100,
        initial=3,
        help_text="Failed runs in a row before the owners of its KPIs get a data-freshness task.",
    )
    settings = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "class": "code", "spellcheck": "false"}),
        initial=SQL_EXAMPLE,
        required=False,
        help_text="The kind's fields and its pulls, as in the manifest's data_sources (credentials by secret name).",
    )

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org
        self.fields["kind"].choices = [(kind, connector.label) for kind, connector in CONNECTORS.items()]
        self.data_source: dict | None = None

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        fields = {name: cleaned.get(name) for name in FORM_FIELDS}
        self.data_source, problems = data_source_check(org=self.org, fields=fields, settings=cleaned.get("settings"))
        for problem in problems:
            self.add_error(None, problem)
        return cleaned

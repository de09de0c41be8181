from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

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

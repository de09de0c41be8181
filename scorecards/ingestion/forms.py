from __future__ import annotations

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat


class MeasurementImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
        error_messages={
            "required": "Choose a CSV file.",
            "empty": "The file is empty; it needs the header line kpi,at,value and one line per measurement.",
        },
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is {filesizeformat(settings.IMPORT_MAX_BYTES)}. "
                "Split it into smaller files."
            )
        if not upload.name.lower().endswith((".csv", ".txt")):
            raise forms.ValidationError(f'"{upload.name}" is not a .csv file. Save the sheet as "CSV UTF-8" first.')
        head = upload.read(8192)
        upload.seek(0)
        # Text never holds a NUL byte; a workbook or PDF renamed .csv does, and would fail on every line.
        if b"\x00" in head:
            raise forms.ValidationError(
                f'"{upload.name}" is not a CSV text file (a spreadsheet workbook?). Save the sheet as "CSV UTF-8".'
            )
        return upload

"""Stage `validate`: check the ingested data; errors stop the pipeline, warnings are reported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import detect_format, read_table
from gitml.data.validation import validate_frame
from gitml.errors import ValidationError
from gitml.files import write_json, write_text
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)


def _validate(args: argparse.Namespace, params: Params) -> None:
    """Validate the data; on failure keep the last good report and exit non-zero."""
    source = params.data.source
    is_csv = detect_format(Path(source), params.data.format) == "csv"
    report = validate_frame(
        read_table(args.data, categories=params.data.categorical),
        params.data,
        params.validate_,
        source=source,
        line_offset=1 if is_csv else None,
    )
    for finding in report.findings:
        if finding.level != "info":
            print(
                f"[validate] {finding.level}: {source}: [{finding.rule}] {finding.message}",
                file=sys.stderr,
            )
    if not report.ok:
        errors = report.errors
        raise ValidationError(
            f"{source}: {len(errors)} data rule(s) failed; first: [{errors[0].rule}] "
            f"{errors[0].message}",
            hint=f"fix the data, or the declared schema of '{params.data.name}' in conf/data/; "
            f"the last good {args.report} was left as it was",
        )
    write_json(args.report, report.to_dict())
    write_text(args.summary, report.to_markdown())
    print(
        f"[validate] {source}: {report.rows:,} rows passed {report.checks} checks "
        f"({len(report.warnings)} warnings) -> {args.report}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_stage("validate", _configure, _validate, argv)


if __name__ == "__main__":
    sys.exit(main())

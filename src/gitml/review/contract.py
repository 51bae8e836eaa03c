"""What changed in the model's input/output contract (signature.json), and what breaks clients.

Pure: two signatures in, a `SignatureDiff` out. A change is breaking when some request that
the old model accepted is refused by the new one, or answered in a different vocabulary:
a removed input, a new required input, a type that accepts less, removed categories or
allowed values, a narrower range, an input that is no longer nullable, other output classes,
another positive class, task or target. Widening (int -> float, a wider range, new
categories, a new nullable input) is a change, not a break.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# type changes that accept every value the old type accepted
_WIDENING = {("int", "float")}


@dataclass(frozen=True)
class SignatureDiff:
    added: list[str] = field(default_factory=list)  # new required inputs
    optional_added: list[str] = field(default_factory=list)  # new nullable inputs
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "'name': what changed", breaking or not
    incompatible: list[str] = field(default_factory=list)  # the changes old clients break on
    outputs: list[str] = field(default_factory=list)  # output changes (classes, positive class)

    @property
    def breaking(self) -> list[str]:
        """Reasons a client of the old signature would break against the new one."""
        reasons = [f"input '{c}' removed" for c in self.removed]
        reasons += [f"new required input '{c}'" for c in self.added]
        reasons += [f"input {c}" for c in self.incompatible]
        return reasons + self.outputs


def diff_signatures(base: dict[str, Any] | None, head: dict[str, Any] | None) -> SignatureDiff:
    """Compare two signatures; no diff when either side has none (e.g. a first model)."""
    if not base or not head:
        return SignatureDiff()
    old = {i["name"]: i for i in base.get("inputs", [])}
    new = {i["name"]: i for i in head.get("inputs", [])}
    changed: list[str] = []
    incompatible: list[str] = []
    for name in sorted(set(old) & set(new)):
        breaking, widening = _input_changes(old[name], new[name])
        incompatible += [f"'{name}': {text}" for text in breaking]
        changed += [f"'{name}': {text}" for text in breaking + widening]
    added = sorted(set(new) - set(old))
    return SignatureDiff(
        added=[n for n in added if not new[n].get("nullable")],
        optional_added=[n for n in added if new[n].get("nullable")],
        removed=sorted(set(old) - set(new)),
        changed=changed,
        incompatible=incompatible,
        outputs=_output_changes(base.get("output") or {}, head.get("output") or {}),
    )


def _input_changes(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(breaking, non-breaking) descriptions of how one input changed."""
    breaking: list[str] = []
    widening: list[str] = []
    old_type, new_type = a.get("type"), b.get("type")
    if old_type != new_type:
        text = f"type {old_type} -> {new_type}"
        (widening if (old_type, new_type) in _WIDENING else breaking).append(text)
    if a.get("nullable") and not b.get("nullable"):
        breaking.append("no longer nullable")
    elif b.get("nullable") and not a.get("nullable"):
        widening.append("now nullable")
    for key, what in (("categories", "categories"), ("allowed", "allowed values")):
        before, after = a.get(key), b.get(key)
        if after is None:
            if before is not None:
                widening.append(f"any value allowed (was {what} {_show(before)})")
            continue
        if before is None:
            breaking.append(f"{what} restricted to {_show(after)}")
            continue
        lost = [v for v in before if v not in after]
        gained = [v for v in after if v not in before]
        if lost:
            breaking.append(f"{what} removed {_show(lost)}")
        if gained:
            widening.append(f"{what} added {_show(gained)}")
    breaking += _narrowed(a, b)
    return breaking, widening


def _narrowed(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Declared bounds that now refuse values the old ones accepted (observed ranges aside)."""
    found = []
    low_a, low_b = a.get("min"), b.get("min")
    if low_b is not None and (low_a is None or low_b > low_a):
        found.append(f"minimum raised {_bound(low_a)} -> {low_b}")
    high_a, high_b = a.get("max"), b.get("max")
    if high_b is not None and (high_a is None or high_b < high_a):
        found.append(f"maximum lowered {_bound(high_a)} -> {high_b}")
    return found


def _output_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    found = []
    task_a, task_b = a.get("task", "binary"), b.get("task", "binary")  # no task: binary
    if task_a != task_b:
        found.append(f"task changed {task_a} -> {task_b} (responses have another form)")
    if a.get("target") and b.get("target") and a["target"] != b["target"]:
        found.append(
            f"target changed {a['target']!r} -> {b['target']!r} (outputs predict another column)"
        )
    if [str(c) for c in a.get("classes") or []] != [str(c) for c in b.get("classes") or []]:
        found.append(f"output classes changed {a.get('classes')} -> {b.get('classes')}")
    if a.get("positive_class") != b.get("positive_class"):
        found.append(
            f"positive class changed {a.get('positive_class')!r} -> {b.get('positive_class')!r} "
            "(scores now mean something else)"
        )
    return found


def _bound(value: Any) -> str:
    return "none" if value is None else f"{value}"


def _show(values: list[Any]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"

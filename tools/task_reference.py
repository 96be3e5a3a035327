"""The task reference of docs/tasks/<family>.md: one section per built-in task, read from the registry."""
from __future__ import annotations

from typing import Any

from ofasys_fs.schemas import training_attrs

FAMILIES = {  # family -> page title; every built-in task names one as its `family`
    "image_text": "Image-text tasks",
    "grounding": "Grounding and detection tasks",
    "text": "Text tasks",
    "tables": "Table and SQL tasks",
    "speech": "Speech tasks",
    "video": "Video tasks",
    "motion": "Motion tasks",
    "glue": "GLUE-style sentence classification",
    "sudoku": "Sudoku",
    "image_generation": "Image generation tasks",
}


def builtin_tasks() -> dict[str, type]:
    """Registered task name -> class, for the tasks defined in the ofasys_fs.tasks package (not plugins)."""
    import ofasys_fs.tasks  # noqa: F401  (registers the built-ins)
    from ofasys_fs.registry import TASK_REGISTRY

    return {name: TASK_REGISTRY.get(name).cls for name in TASK_REGISTRY.names()
            if TASK_REGISTRY.get(name).cls.__module__.startswith("ofasys_fs.tasks.")}


def slot_columns(task: Any) -> list[str]:
    """Each column the task's templates read, with its modality and role: input, prompt or target."""
    described: dict[str, str] = {}
    for template in task.templates:
        if template.repeat is not None:
            fields = ", ".join(f"`{s.name.rpartition('.')[2]}` ({s.modality})" for s in template.repeat.slots)
            described.setdefault(template.repeat.list_name, f"list of {{{fields}}}, target")
        for slot in (*template.encoder, *template.decoder):
            if slot.name is None or slot.in_repeat:
                continue
            role = "input" if slot.side == "encoder" else ("prompt" if slot.no_loss else "target")
            if slot.side == "decoder" and training_attrs(slot.attrs) != slot.attrs:
                role += ", and in part an input when generating"  # motion in-betweening's known frames
            custom = slot.preprocess != slot.modality.lower()
            kind = slot.modality + (f", preprocess={slot.preprocess}" if custom else "")
            if slot.name not in described:
                described[slot.name] = f"{kind}, {role}"
            elif role not in described[slot.name]:
                described[slot.name] += f" and {role}"
    return [f"`{name}` ({entry})" for name, entry in described.items()]


def task_section(name: str, cls: type) -> str:
    """One task's reference: what it does, its instruction(s), columns, metric, criterion, decoding defaults."""
    task = cls()
    summary = " ".join((cls.__doc__ or "").split())
    templates = "\n".join(f"    {template.text}" for template in task.templates)
    decoding = ", ".join(f"`{key}={value}`" for key, value in task.generation.items()) or "the output kind's"
    lines = [f"### `{name}`", "", summary, "", templates, "",
             f"- columns: {'; '.join(slot_columns(task))}",
             f"- metric: {f'`{task.metric}`' if task.metric else 'none'} (references: `{task.references}`)",
             f"- criterion: `{task.criterion}`",
             f"- decoding defaults: {decoding}"]
    if task.answers is not None:
        lines.append(f"- closed set (default answers): {', '.join(f'`{a}`' for a in task.answers)}")
    return "\n".join(lines)


def family_reference(family: str) -> str:
    """The generated block of docs/tasks/<family>.md."""
    sections = [task_section(name, cls) for name, cls in builtin_tasks().items() if cls.family == family]
    return "\n\n".join(sections) + "\n"

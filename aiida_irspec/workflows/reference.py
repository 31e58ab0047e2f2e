"""Reference tables of the docs, generated from the code so that they cannot drift: the protocol levels of every
process that has them, and the input ports of a WorkChain with their types and help, namespace by namespace
(``docs/campaign.md``; ``tests/test_campaign_spec.py`` checks that the docs carry the current text)."""

from aiida_irspec.workflows.protocols import PROTOCOL_DIR, read_yaml


def protocol_markdown():
    """One table row per protocol file and level: the process, the level and its description."""
    lines = ["| protocols of | fast | moderate | precise |", "|---|---|---|---|"]
    for path in sorted(PROTOCOL_DIR.rglob("*.yaml")):
        data = read_yaml(path)
        tag = path.relative_to(PROTOCOL_DIR).with_suffix("").as_posix()
        default = data["default_protocol"]
        cells = [data["protocols"][level]["description"] + (" (default)" if level == default else "")
                 for level in ("fast", "moderate", "precise")]
        lines.append(f"| `{tag}` | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def ports_markdown(process_class):
    """The input ports of ``process_class``, nested namespaces as dotted names: (name, type, required, help)."""
    lines = ["| input | type | required | meaning |", "|---|---|---|---|"]
    _port_rows(process_class.spec().inputs, "", lines)
    return "\n".join(lines)


def _port_rows(namespace, prefix, lines):
    from plumpy.ports import PortNamespace

    for name, port in namespace.items():
        if name == "metadata":
            continue
        dotted = f"{prefix}{name}"
        help_text = " ".join((port.help or "").split()).replace("|", "\\|")
        if isinstance(port, PortNamespace) and not port.dynamic:
            lines.append(f"| `{dotted}` | namespace | {'yes' if port.required else 'no'} | {help_text} |")
            _port_rows(port, f"{dotted}.", lines)
            continue
        valid = port.valid_type if isinstance(port.valid_type, tuple) else (port.valid_type,)
        kind = ", ".join(t.__name__ for t in valid if t is not None and t is not type(None)) or "any"
        if isinstance(port, PortNamespace):
            kind = f"namespace of {kind}"
        lines.append(f"| `{dotted}` | {kind} | {'yes' if port.required else 'no'} | {help_text} |")


def regenerate(path):
    """Rewrite the generated parts of a docs page (between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``
    markers: ``protocols``, ``ports``, ``spec-reference``); ``python -m aiida_irspec.workflows.reference
    docs/campaign.md``."""
    import pathlib

    from aiida_irspec.campaign.spec import reference_markdown
    from aiida_irspec.workflows.campaign import CampaignWorkChain

    parts = {"protocols": protocol_markdown, "ports": lambda: ports_markdown(CampaignWorkChain),
             "spec-reference": reference_markdown}
    path = pathlib.Path(path)
    text = path.read_text()
    for name, make in parts.items():
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        if start in text:
            head, rest = text.split(start, 1)
            text = head + start + make().strip() + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text)


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        regenerate(name)

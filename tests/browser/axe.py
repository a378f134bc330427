"""axe-core (npm, tests/node) injected into a Playwright page or frame: the accessibility rules a
screen reader, a keyboard or a low-vision shopper would trip on."""
from helpers import node_modules

IMPACTS = ["minor", "moderate", "serious", "critical"]


def violations(page, worst_allowed="moderate", context=None):
    """The violations on the page (or Frame) now whose impact is above `worst_allowed`, as readable
    lines (rule, impact, the first few offending nodes) so a failing assert says what to fix."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated rather than added as a <script>: a page whose CSP forbids inline script (the
        # checkout's) is scanned as it is served.
        source = (node_modules() / "axe-core" / "axe.min.js").read_text()
        page.evaluate("source => { (0, eval)(source); }", source)
    result = page.evaluate("ctx => axe.run(ctx || document, {resultTypes: ['violations']})", context)
    floor = IMPACTS.index(worst_allowed)
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            for v in result["violations"] if IMPACTS.index(v["impact"] or "minor") > floor]

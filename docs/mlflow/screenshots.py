"""The screenshots of docs/mlflow.md, from a sweep served by `mlflow server` in headless Chromium:
the runs table with the headline columns added, the chart view, curve/worst enlarged, and the
best trial's page. Usage: python docs/mlflow/screenshots.py OUT_FOLDER [TRACKING_URL]."""
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from headless_chromium import find_or_install_chromium, open_page  # noqa: E402

# The columns docs/mlflow.md tells a user to add, in the table's order.
COLUMNS = ("test_robust_acc", "test_autoattack_acc", "test_clean_acc", "val_robust_acc", "orch.status")
SELECTOR = ("Array.from(document.querySelectorAll('[data-component-id=\"mlflow.experiment_page.runs_table"
            ".column_selector\"] .du-bois-light-tree-node-content-wrapper'))")


def add_column(page, name: str) -> None:
    """Columns > Search columns > tick `name`."""
    page.evaluate("(() => { const i = document.querySelector('input[placeholder=\"Search columns\"]');"
                  " i.focus(); i.select(); })()")
    page.send("Input.insertText", {"text": name})
    page.wait_until(f"{SELECTOR}.filter(e => e.innerText.trim() === '{name}').length", 20)
    page.evaluate(f"{SELECTOR}.find(e => e.innerText.trim() === '{name}').click()")
    time.sleep(0.5)


def press_escape(page) -> None:
    for kind in ("keyDown", "keyUp"):
        page.send("Input.dispatchKeyEvent", {"type": kind, "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27})


def main(out: Path, uri: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    chromium = find_or_install_chromium()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("orch-digits").experiment_id
    parent = next(r for r in client.search_runs([experiment]) if "mlflow.parentRunId" not in r.data.tags)
    runs_page = f"{uri}/#/experiments/{experiment}/runs?workflowType=machine_learning"
    with open_page(chromium, width=2000, height=760) as page:
        page.navigate(runs_page)
        page.wait_until("document.querySelectorAll('.ag-row').length", 120)
        page.evaluate("document.querySelectorAll('button[aria-label=\"Close\"]').forEach(b => b.click())")  # the assistant
        page.evaluate("document.querySelector('.ag-row button[data-component-id*=runnamecellrenderer]').click()")
        time.sleep(2)
        page.evaluate("Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() == 'Columns').click()")
        page.wait_until("!!document.querySelector('input[placeholder=\"Search columns\"]')", 20)
        for name in COLUMNS:
            add_column(page, name)
        press_escape(page)
        time.sleep(2)
        page.screenshot(out / "runs-table.png", full_page=False)

        page.evaluate("document.querySelector('input[name=\"runs-view-mode\"][value=\"CHART\"]').click()")
        page.wait_until("!!document.querySelector('input[placeholder=\"Search metric charts\"]')", 60)
        time.sleep(4)
        page.screenshot(out / "charts.png", full_page=False)
        page.evaluate("document.querySelector('input[placeholder=\"Search metric charts\"]').focus()")
        page.send("Input.insertText", {"text": "curve/worst"})
        worst = ("Array.from(document.querySelectorAll('[data-testid=experiment-view-compare-runs-card]'))"
                 ".find(c => c.innerText.startsWith('curve/worst\\n'))")
        page.wait_until(f"!!({worst} || {{}}).querySelector && !!{worst}.querySelector('.js-plotly-plot .scatterlayer .trace')", 90)
        page.evaluate(f"{worst}.querySelector('[data-component-id=fullscreen_button_chartcard]').click()")
        page.wait_until("!!document.querySelector('[role=dialog] .js-plotly-plot .scatterlayer .trace')", 60)
        time.sleep(1.5)  # the enlarged chart's entry animation
        page.screenshot(out / "curves.png", full_page=False)
    with open_page(chromium, width=1500, height=1000) as page:
        page.navigate(f"{uri}/#/experiments/{experiment}/runs/{parent.data.tags['best.run_id']}?workflowType=machine_learning")
        page.wait_until("document.body.innerText.includes('test_robust_acc')", 120)
        page.evaluate("document.querySelectorAll('button[aria-label=\"Close\"]').forEach(b => b.click())")
        time.sleep(3)
        page.screenshot(out / "child-run.png", full_page=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:5055")

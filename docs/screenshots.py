"""Screenshots of what `make demo` leaves running, for the README: the storefront (/shop/), the Airflow
UI (the DAGs) and the Evidently UI (the project's dashboard), taken in headless Chromium (Debian's
chromium and chromium-driver, driven by selenium).

Run after `make demo`: ``.venv/bin/python docs/screenshots.py``; writes docs/*.png.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
# A root process on a machine whose only network is loopback (see tests/services/test_service.py).
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1360,900", "--hide-scrollbars"]


def browser():
    from selenium import webdriver

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise SystemExit("screenshots: Debian's chromium and chromium-driver are needed: "
                         "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def storefront(b, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    b.get(f"{url}/shop/")
    b.find_element(By.ID, "q").send_keys("insulated water bottle")
    b.find_element(By.ID, "go").click()
    wait = WebDriverWait(b, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))
    b.find_elements(By.CSS_SELECTOR, "#results .card .more")[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#similar .card"))
    b.find_element(By.ID, "shopper").send_keys("u000042")
    b.find_element(By.CSS_SELECTOR, "#shopper-form button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#recs .card"))
    b.set_window_size(1360, 1500)  # the results, "more like this" and the shopper's strip in one picture
    b.save_screenshot(str(HERE / "storefront.png"))
    b.set_window_size(1360, 900)


def airflow(b, url: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    b.get(f"{url}/")
    wait = WebDriverWait(b, 60)
    wait.until(lambda d: d.find_elements(By.NAME, "username"))
    b.find_element(By.NAME, "username").send_keys("admin")
    b.find_element(By.NAME, "password").send_keys(password, Keys.ENTER)
    wait.until(lambda d: "/auth/login" not in d.current_url)  # signed in: the token cookie is set
    b.get(f"{url}/dags")
    wait.until(lambda d: "shoploop" in d.page_source and d.find_elements(By.CSS_SELECTOR, "a[href*='/dags/shoploop']"))
    time.sleep(2)  # the run bars load after the list
    b.save_screenshot(str(HERE / "airflow.png"))


def evidently(b, url: str) -> None:
    projects = httpx.get(f"{url}/api/projects", timeout=30).json()
    project = next((p for p in projects if p.get("name") == "shoploop"), None)
    b.get(f"{url}/projects/{project['id']}" if project else url)  # the project's dashboard
    b.set_window_size(1360, 1300)
    time.sleep(6)  # a single-page app: its plots load after the page
    b.save_screenshot(str(HERE / "evidently.png"))
    b.set_window_size(1360, 900)


def main() -> None:
    from shoploop.pipeline.demo import airflow_password
    from shoploop.settings import get_settings

    settings = get_settings()
    base = f"http://{settings.host}"
    b = browser()
    taken = []
    try:
        for name, take in [("storefront", lambda: storefront(b, f"{base}:{settings.service_port}")),
                           ("airflow", lambda: airflow(b, f"{base}:{settings.airflow_port}", airflow_password(settings))),
                           ("evidently", lambda: evidently(b, f"{base}:{settings.evidently_port}"))]:
            try:
                take()
                taken.append(name)
                print(f"docs/{name}.png")
            except Exception as error:  # one UI down must not cost the others' pictures
                print(f"{name}: no screenshot ({type(error).__name__}: {str(error).splitlines()[0][:200]})", file=sys.stderr)
    finally:
        b.quit()
    if not taken:
        raise SystemExit("screenshots: none taken: is `make demo` running?")


if __name__ == "__main__":
    main()

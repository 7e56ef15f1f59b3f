"""Stage `apk` (optional, config `android: {apk: true}`; off by default): the run ends with the demo app's
signed debug APK holding final/model.pt, RUN/android/srprune-demo.apk.

The model is compiled again as a c-lib for android-arm64 at the run's output size into RUN/android/clib/ (the
compile stage's artifact is for the run's target and format; RUN/compiled/android-arm64 may be a TVM module),
then srprune.apk builds, signs (debug key) and verifies the APK exactly as `srprune android apk` does. Both live
in RUN/android/, which this stage declares, so a re-run of an earlier stage moves an APK of an older model aside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srprune.layout import RunLayout
from srprune.search.stages.base import Stage

if TYPE_CHECKING:
    from srprune.search.pipeline import Run


def enabled(cfg: dict[str, Any]) -> bool:
    """On when the config says `android: {apk: true}` (a config.yaml older than the setting: off)."""
    return bool((cfg.get("android") or {}).get("apk"))


def run(run: "Run", fresh: bool) -> dict[str, Any]:
    """Compile the final model for the app, build and verify the APK; the summary names what was checked."""
    from srcommon.owned import OwnedFolder
    from srprune import android, apk

    layout = run.layout
    apk.find_tools()  # missing tools: one line before the compile
    owned = OwnedFolder.claim(layout.android, "run apk", force=True)  # a resumed stage starts over
    out_hw = run.config.out_hw
    threads = run.target.threads if run.target.name == android.TARGET else None
    clib = owned.path("clib")
    android.compile_clib(str(layout.final_model), None, (out_hw[1], out_hw[0]), threads, 0, clib)
    result = apk.build_apk(str(clib), layout.android_apk, force=True)
    return {"apk": str(result.path.relative_to(layout.root)), "package": result.package,
            "min_sdk": result.min_sdk, "target_sdk": result.target_sdk, "schemes": result.schemes,
            "libs_sha256": result.libs, "checks": result.checks,
            "not_checked": "installing and running it on a phone"}


STAGE = Stage(
    name="apk",
    reads=("android.apk", "target", "threads", "output_size"),
    after=("finetune",),
    writes=lambda layout: [RunLayout(layout.root).android],
    run=run,
    reads_model=True,
    enabled=enabled,
)

#!/usr/bin/env bash
# Build the packages a lent GPU machine lacks for a sweep (Ray, MLflow, Optuna and what they need that
# its image does not hold; rouge_score and nltk from this machine's .venv) as one xz tarball that
# `bench/gpu_sweep_session.sh OUT SITE.tar.xz` unpacks: ~50 MB, under what one device call may carry.
#   bash bench/gpu_site.sh .gpu_carry/site.tar.xz   # (.gpu_carry/ in .git/info/exclude), then on the device:
#   bash bench/gpu_sweep_session.sh $OUT .gpu_carry/site.tar.xz     with carry [".gpu_carry"]
# The image runs CPython 3.12 and already holds torch, transformers, numpy, scipy, pandas, pyarrow,
# aiohttp, grpcio, protobuf, requests, matplotlib, ... (the device tool's KINDS.md lists them).
# Dropped to fit: Ray's Java jars and RLlib, MLflow's web UI (the sweep writes to sqlite, no server),
# plotly's Jupyter extension, and packages a sweep never imports (docker, gunicorn, virtualenv, py-spy, ...).
set -eu
out=$(realpath -m "${1:-.gpu_carry/site.tar.xz}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkgs="ray==2.60.0 mlflow==3.17.2 mlflow-skinny==3.17.2 mlflow-tracing==3.17.2 optuna==5.0.0 plotly==7.1.0
aiohttp-cors==0.8.1 alembic==1.20.1 annotated-types==0.8.0 cachetools==7.3.3 cffi==2.1.1 colorful==0.5.8
colorlog==6.12.0 cryptography==50.0.2 databricks-sdk==0.162.0 defusedxml==0.7.1 fastapi==0.165.0 gitdb==4.0.12
gitpython==3.2.1 google-api-core==2.44.0 google-auth==2.63.0 googleapis-common-protos==1.76.0
importlib-metadata==9.1.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 mako==1.4.3 opencensus==0.11.4
opencensus-context==0.1.3 opentelemetry-api==1.45.2 opentelemetry-exporter-prometheus==0.66b2
opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2
platformdirs==4.14.8 prettytable==3.18.0 proto-plus==1.29.0 pyasn1==0.6.5 pyasn1-modules==0.4.2 pycparser==3.12
pydantic==2.14.4 pydantic-core==2.50.5 python-dotenv==1.2.4 referencing==0.37.0 rpds-py==2026.9.1
smart-open==9.0.2 smmap==5.0.3 sqlalchemy==2.1.9 sqlparse==0.6.1 starlette==1.10.0 tensorboardx==2.6.5
typing-inspection==0.4.5 uvicorn==0.54.0 wcwidth==0.9.4"
plat="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64"
python3 -m pip download -q --no-deps $plat -d "$work/whl" $pkgs
python3 - "$work/whl" <<'EOF'
import os, pathlib, sys, zipfile
strip = {"ray-": ("ray/jars/", "ray/rllib/"), "mlflow-3": ("mlflow/server/js/",)}
for whl in pathlib.Path(sys.argv[1]).glob("*.whl"):
    for prefix, drops in strip.items():
        if whl.name.startswith(prefix):
            tmp = whl.with_suffix(".tmp")
            with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
                for item in zin.infolist():
                    if not item.filename.startswith(drops):
                        zout.writestr(item, zin.read(item.filename))
            os.replace(tmp, whl)
EOF
python3 -m pip install -q --no-index --no-deps --no-compile $plat --target "$work/site" "$work"/whl/*.whl
rm -rf "$work/site/plotly/labextension" "$work/site/share" "$work/site/bin"
# rouge_score (an sdist only) and nltk: pure Python, copied from this project's environment
site=$(${PYTHON:-.venv/bin/python} -c "import rouge_score, os; print(os.path.dirname(os.path.dirname(rouge_score.__file__)))")
cp -r "$site/rouge_score" "$site/nltk" "$work/site/"
mkdir -p "$(dirname "$out")"
tar -C "$work/site" -cf - . | xz -T0 -6 > "$out"
ls -la "$out"

#!/usr/bin/env bash
# Makes sure the OpenAPI validator the test suite runs is installed: openapi-spec-validator
# (python-openapi, supports OpenAPI 3.1), from PyPI. The test
# `openapi::the_document_passes_a_standard_openapi_validator` fails loudly without it.
# Usage: bash tests/openapi-validate.sh          (install if missing)
#        bash tests/openapi-validate.sh FILE...  (install if missing, then validate FILEs)
set -euo pipefail
VERSION=0.9.0
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import openapi_spec_validator' 2>/dev/null; then
    echo "installing openapi-spec-validator==${VERSION}"
    "$PY" -m pip install --quiet "openapi-spec-validator==${VERSION}"
fi
if [ "$#" -gt 0 ]; then
    exec "$PY" -m openapi_spec_validator --validation-errors all "$@"
fi

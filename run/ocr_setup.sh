#!/usr/bin/env bash
# Tesseract and its Vietnamese model (Debian packages, root needed), for the text layer's OCR report
# (python -m inference.text_layer_ocr) and its optional text detector (--TEXT_DETECTOR=tesseract). Not part of
# requirements.txt: the text layer's default detector (edges) needs nothing beyond it.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q tesseract-ocr tesseract-ocr-vie
tesseract --list-langs 2>&1 | grep -qx vie && echo "tesseract $(tesseract --version 2>&1 | head -1 | cut -d' ' -f2) with vie: ready"

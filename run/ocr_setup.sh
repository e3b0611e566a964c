#!/usr/bin/env bash
# Tesseract and its Vietnamese model for the text layer's OCR report (python -m inference.text_layer_ocr); Debian
# packages, root needed. Not part of requirements.txt: only the legibility report uses them.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q tesseract-ocr tesseract-ocr-vie
tesseract --list-langs 2>&1 | grep -qx vie && echo "tesseract $(tesseract --version 2>&1 | head -1 | cut -d' ' -f2) with vie: ready"

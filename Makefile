PY := .venv/bin/python
DATA ?= datasets/synthvis

.PHONY: setup test demo data clean

setup:
	bash tools/setup_env.sh

data: setup
	@test -f $(DATA)/train.json -a -f $(DATA)/msd_train.json || $(PY) -m vis_d2.data.synthetic --out $(DATA)

test: setup
	$(PY) -m pytest tests

demo: setup data
	$(PY) tools/demo.py

clean:
	rm -rf output

"""The application face: the command line (:mod:`.cli`, one module per command in
:mod:`.commands`), the demo and its study (:mod:`.demo`, :mod:`.demo_study`), the stage cache they
run on (:mod:`.pipeline`) and the analysis and report writing (:mod:`.reporting`).

Every command calls :mod:`mosaic.api`; the demo calls the same layers the API does, never the API
or the command line.
"""

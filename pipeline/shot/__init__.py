"""A shot's stages, free of Prefect: one module a stage (track, swap, project, path, composite), each with
the same parts (`stage.Stage`), the list of them in order (`stages.STAGES`), and the pieces a render is
made of besides them: the frame loop and its per-frame chain (`frames`), review tiles and contact sheets
(`review`), movies (`movies`) and the run report (`report`). `pipeline.flows` runs them as Prefect
tasks; a notebook or a benchmark can call them directly.

Nothing is imported here, so that `vfx status` and `--dry-run`, which need only the stage keys, stay light.
"""

"""The service on Ray Serve: the same app as replicas on a Ray cluster.

Needs the `ray` extra (`pip install -e '.[ray]'`). `python -m service.ray` runs a local
cluster; `service.ray.application:app_builder` is the import path for `serve deploy` and KubeRay.
Nothing here is imported by the single-process service.
"""

//! Ingress: the hyper server for `POST /hooks/{source}`.

//! Portcullis: identity and access management for Kubernetes, driven by CRDs.
//!
//! The crate in layers; a module imports only from its own layer or below.
//!
//! ```text
//!  cli                      one subcommand each; main.rs only parses arguments
//!   │
//!  review                   `portcullis diff`: the access delta of two sides (folders, git revisions)
//!   │
//!  standalone               the whole product in one process, a folder instead of the API server
//!   │
//!  controller   token::service   scim::service      the operator and the two HTTP services
//!   │               │               │               (none imports another; probes and http_metrics:
//!   │               │               │                their health routes and their metrics port;
//!   │               │               │                regional_routing: each request to the service
//!   │               │               │                on its organization's store)
//!  resources  posture ─┴───────────────┘             what the CRDs become: store records, generated
//!   │                                               secrets' names, signing keys; the compliance posture
//!  store                    every SQL statement: desired state, identities, grants, sessions,
//!   │                       the change feed and the index follower
//!  authz  validation  manifests  token (jwt, keys, claims, pkce, password, refresh, totp, throttle)
//!   │    federation (upstream OpenID providers, home-realm routing)
//!   │                       pure: access resolution, cross-resource checks, protocol cores
//!  api  secret  sealing  error_chain  html  listener  http_metrics  audit  mail
//!                           CRD types, and the primitives everything shares: secrets and their
//!                           hashes, AEAD sealing of keys, escaping, serving with timeouts and a
//!                           connection cap, request metrics, the audit events' shape, hash chain
//!                           and verification, SMTP mail (+ the portcullis-scim crate: the SCIM
//!                           protocol core)
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod authz;
pub mod cli;
pub mod controller;
pub mod error_chain;
pub mod federation;
pub mod html;
pub mod http_metrics;
pub mod listener;
pub mod mail;
pub mod manifests;
pub mod posture;
pub mod probes;
pub mod regional_routing;
pub mod resources;
pub mod review;
pub mod scim;
pub mod sealing;
pub mod secret;
pub mod standalone;
pub mod store;
pub mod token;
pub mod validation;

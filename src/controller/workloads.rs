//! The Deployments and Services of `token-service` and `scim-service`,
//! applied by server-side apply with one field manager and labelled, so that
//! a service the configuration no longer wants is deleted.
//!
//! ```text
//!  WorkloadSettings (operator flags) ──plan (pure)──► Deployment + Service per wanted service
//!   + the services' keys checksum                         │ SSA, field manager portcullis-operator
//!  labelled managed-by=portcullis-operator, component=… ──┴─► anything else so labelled is deleted
//! ```
//!
//! Everything a service needs comes from the Deployment, never a default:
//!
//! | what | how it reaches the container |
//! |---|---|
//! | database URL | `PORTCULLIS_DATABASE_URL` ← `secretKeyRef` the database Secret |
//! | regional stores | `PORTCULLIS_STORE_URL_{REGION}` ← `secretKeyRef` each region's Secret, named by `PORTCULLIS_STORE_ENVS` (`eu=PORTCULLIS_STORE_URL_EU,…`) |
//! | public base URL | `PORTCULLIS_PUBLIC_BASE_URL` / `PORTCULLIS_SCIM_BASE_URL` (the operator's flags) |
//! | key-encryption key, login secret | `PORTCULLIS_KEY_ENCRYPTION_KEY`, `…_PREVIOUS_…`, `PORTCULLIS_LOGIN_SECRET` ← `secretKeyRef` the services' keys Secret ([`super::service_keys`]); a checksum of them in the pod template rolls the pods when they change |
//! | upstream client secrets, CA bundles, webhook keys | the Secret [`super::upstream_secrets`] copies them into, mounted at its `MOUNT_PATH` (`PORTCULLIS_UPSTREAM_SECRETS_DIR`), only when something is referenced |
//! | where to listen | `--listen $(POD_IP):8080`, `--metrics-listen $(POD_IP):9090`, `POD_IP` from the downward API |
//!
//! The services bind their pod's IP rather than `0.0.0.0`: what a pod is
//! reached at (Services, probes, Prometheus), and what the test suite's
//! kubelet stand-in can give each replica on one machine (its own loopback
//! address). The price is that `kubectl port-forward`, which dials
//! localhost inside the pod, does not reach them; `kubectl proxy` and the
//! Services do.
//!
//! A service whose required setting is missing (the token service without
//! a public base URL) is not applied, and one already running is left as it
//! is: the operator reports the problem ([`super::operator_status`]) rather
//! than roll out a pod that would serve nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::service_keys::{KEY_ENCRYPTION_KEY, LOGIN_SECRET, PREVIOUS_KEY_ENCRYPTION_KEY};
use super::upstream_secrets;
use super::{Error, FIELD_MANAGER, Result, labels};
use crate::probes;

/// The services the operator can run.
pub const SERVICES: [&str; 2] = ["token-service", "scim-service"];

/// Port each service listens on, in the container and on its Service (`http`).
pub const SERVICE_PORT: i32 = 8080;

/// Port of each service's `/metrics` (`metrics`), apart from what it serves.
pub const METRICS_PORT: i32 = 9090;

/// Pod template annotation carrying the checksum of the services' keys.
pub const SERVICE_KEYS_CHECKSUM: &str = "iam.portcullis.dev/service-keys-checksum";

/// How the managed services run.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSettings {
    pub namespace: String,
    pub image: String,
    pub token_service_replicas: i32,
    pub scim_service_replicas: i32,
    /// Secret (in `namespace`) and key holding the database URL.
    pub database_secret: String,
    pub database_secret_key: String,
    /// Region → Secret (in `namespace`, key `database_secret_key`) of each
    /// regional store (data residency).
    pub region_secrets: std::collections::BTreeMap<String, String>,
    /// Secret (in `namespace`) of the services' keys.
    pub service_keys_secret: String,
    /// The token service's public base URL (the issuers' base); without it
    /// the token service is not applied.
    pub public_base_url: Option<String>,
    /// The SCIM service's public base URL; without it the SCIM service is not applied.
    pub scim_base_url: Option<String>,
    /// Checksum of the services' keys once read ([`super::service_keys`]).
    pub service_keys_checksum: Option<String>,
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
    /// `RUST_LOG` of the services.
    pub log_level: String,
    /// `--log-format` of the services (`text` or `json`).
    pub log_format: String,
    /// The token service's `PORTCULLIS_TRUSTED_PROXIES` (CIDRs of the
    /// Ingress or load balancer in front of it), comma-separated; empty:
    /// the TCP peer is the client.
    pub trusted_proxies: String,
    /// Secret (in `namespace`) whose key `smtp-url` is the token service's
    /// `PORTCULLIS_SMTP_URL` (invitation mail); none: no mail is sent.
    pub smtp_secret: Option<String>,
    /// The token service's `PORTCULLIS_MAIL_FROM`, if set.
    pub mail_from: Option<String>,
    /// The keys of the upstream secrets' copy and where each is mounted
    /// ([`super::upstream_secrets`]); none: nothing is mounted.
    pub upstream_secret_items: Vec<KeyToPath>,
    pub pod_security_context: PodSecurityContext,
    pub security_context: SecurityContext,
    /// Owner of everything applied (the operator's own Deployment), once
    /// [`resolve_owner`] has looked it up.
    pub owner: Option<OwnerReference>,
    /// Name of the operator's own Deployment in `namespace`, if configured.
    pub owner_deployment: Option<String>,
}

/// The pod security context of the services unless configured: the image's
/// non-root user, the runtime's default seccomp profile.
pub fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The container security context of the services unless configured: no
/// privilege, no capability, nothing written to the image's file system.
pub fn default_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        privileged: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The objects of one service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    pub deployment: Deployment,
    pub service: Service,
}

/// Object name of a managed service.
pub fn object_name(service: &str) -> String {
    format!("portcullis-{service}")
}

fn selector_labels(service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "portcullis".to_owned()),
        (labels::COMPONENT.to_owned(), service.to_owned()),
    ])
}

fn all_labels(service: &str) -> BTreeMap<String, String> {
    let mut out = selector_labels(service);
    out.insert(labels::MANAGED_BY_KEY.to_owned(), labels::MANAGED_BY.to_owned());
    out
}

/// Every wanted service (replicas > 0) with its Deployment and Service, or
/// `None` when a setting it needs is missing (then it is left as it is).
pub fn plan(settings: &WorkloadSettings) -> Vec<(&'static str, Option<ServicePlan>)> {
    SERVICES
        .iter()
        .filter_map(|service| {
            let (replicas, base_url) = match *service {
                "token-service" => (settings.token_service_replicas, settings.public_base_url.as_deref()),
                _ => (settings.scim_service_replicas, settings.scim_base_url.as_deref()),
            };
            (replicas > 0)
                .then(|| (*service, base_url.map(|url| plan_service(settings, service, replicas, url))))
        })
        .collect()
}

/// The key of the SMTP Secret ([`WorkloadSettings::smtp_secret`]) holding the URL.
pub const SMTP_URL_KEY: &str = "smtp-url";

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), ..EnvVar::default() }
}

fn env_secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn plan_service(settings: &WorkloadSettings, service: &str, replicas: i32, base_url: &str) -> ServicePlan {
    let name = object_name(service);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(settings.namespace.clone()),
        labels: Some(all_labels(service)),
        owner_references: settings.owner.clone().map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let probe = |path: &str, period: i32, initial_delay: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        initial_delay_seconds: Some(initial_delay),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mut env = vec![
        EnvVar {
            name: "POD_IP".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".to_owned(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        env_secret(
            "PORTCULLIS_DATABASE_URL",
            &settings.database_secret,
            &settings.database_secret_key,
            false,
        ),
        env_value("RUST_LOG", &settings.log_level),
    ];
    // Each regional store's URL in a variable of its own, named to the service by `--store-env`.
    let mut store_envs = Vec::new();
    for (region, secret) in &settings.region_secrets {
        let variable = format!("PORTCULLIS_STORE_URL_{}", region.to_ascii_uppercase().replace('-', "_"));
        env.push(env_secret(&variable, secret, &settings.database_secret_key, false));
        store_envs.push(format!("{region}={variable}"));
    }
    if !store_envs.is_empty() {
        env.push(env_value("PORTCULLIS_STORE_ENVS", &store_envs.join(",")));
    }
    let keys = &settings.service_keys_secret;
    if service == "token-service" {
        env.push(env_value("PORTCULLIS_PUBLIC_BASE_URL", base_url));
        env.push(env_secret("PORTCULLIS_KEY_ENCRYPTION_KEY", keys, KEY_ENCRYPTION_KEY, false));
        env.push(env_secret(
            "PORTCULLIS_PREVIOUS_KEY_ENCRYPTION_KEY",
            keys,
            PREVIOUS_KEY_ENCRYPTION_KEY,
            true,
        ));
        env.push(env_secret("PORTCULLIS_LOGIN_SECRET", keys, LOGIN_SECRET, false));
        if !settings.trusted_proxies.is_empty() {
            env.push(env_value("PORTCULLIS_TRUSTED_PROXIES", &settings.trusted_proxies));
        }
        if let Some(secret) = &settings.smtp_secret {
            env.push(env_secret("PORTCULLIS_SMTP_URL", secret, SMTP_URL_KEY, false));
        }
        if let Some(from) = &settings.mail_from {
            env.push(env_value("PORTCULLIS_MAIL_FROM", from));
        }
        if !settings.upstream_secret_items.is_empty() {
            env.push(env_value("PORTCULLIS_UPSTREAM_SECRETS_DIR", upstream_secrets::MOUNT_PATH));
        }
    } else {
        env.push(env_value("PORTCULLIS_SCIM_BASE_URL", base_url));
    }
    // Optional: a key dropped from the copy just before the pods roll must
    // not keep them from starting.
    let upstream_volume =
        (service == "token-service" && !settings.upstream_secret_items.is_empty()).then(|| Volume {
            name: "upstream-secrets".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(upstream_secrets::MIRROR_SECRET.to_owned()),
                items: Some(settings.upstream_secret_items.clone()),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    let container = Container {
        name: service.to_owned(),
        image: Some(settings.image.clone()),
        args: Some(vec![
            service.to_owned(),
            format!("--listen=$(POD_IP):{SERVICE_PORT}"),
            format!("--metrics-listen=$(POD_IP):{METRICS_PORT}"),
            format!("--log-format={}", settings.log_format),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: SERVICE_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: METRICS_PORT,
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(settings.cpu_request.clone())),
                ("memory".to_owned(), Quantity(settings.memory_request.clone())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(settings.memory_limit.clone()))])),
            ..ResourceRequirements::default()
        }),
        // Readiness asks the store a trivial question: cheap enough to ask
        // often, so that a new pod takes traffic within seconds.
        readiness_probe: Some(probe(probes::READINESS, 2, 0)),
        liveness_probe: Some(probe(probes::LIVENESS, 10, 10)),
        security_context: Some(settings.security_context.clone()),
        volume_mounts: upstream_volume.as_ref().map(|v| {
            vec![VolumeMount {
                name: v.name.clone(),
                mount_path: upstream_secrets::MOUNT_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]
        }),
        ..Container::default()
    };
    let annotations = settings
        .service_keys_checksum
        .as_ref()
        .filter(|_| service == "token-service")
        .map(|checksum| BTreeMap::from([(SERVICE_KEYS_CHECKSUM.to_owned(), checksum.clone())]));
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(service)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(all_labels(service)),
                    annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: upstream_volume.map(|v| vec![v]),
                    security_context: Some(settings.pod_security_context.clone()),
                    // The services talk to the store, not to the API server,
                    // and find nothing through Service environment variables.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let service_object = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(service)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("metrics".to_owned()),
                    port: METRICS_PORT,
                    target_port: Some(IntOrString::String("metrics".to_owned())),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    ServicePlan { deployment, service: service_object }
}

fn with_type<T: Serialize>(object: &T, api_version: &str, kind: &str) -> serde_json::Value {
    let mut body = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
        map.remove("status");
    }
    body
}

/// Applies the plan and deletes managed workloads it does not contain.
/// Looks up the operator's own Deployment, if one is configured, and makes it
/// the owner of everything [`reconcile`] applies.
pub async fn resolve_owner(client: &Client, settings: &mut WorkloadSettings) -> Result<()> {
    let Some(name) = settings.owner_deployment.clone().filter(|_| settings.owner.is_none()) else {
        return Ok(());
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &settings.namespace);
    let deployment = deployments.get_metadata(&name).await.map_err(|source| Error::GetOwned {
        kind: "Deployment",
        namespace: settings.namespace.clone(),
        name: name.clone(),
        source: Box::new(source),
    })?;
    settings.owner = Some(OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "Deployment".to_owned(),
        name,
        uid: deployment.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    });
    Ok(())
}

pub async fn reconcile(client: &Client, settings: &WorkloadSettings) -> Result<()> {
    let namespace = settings.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let planned = plan(settings);
    for (service, plan) in &planned {
        let Some(plan) = plan else {
            tracing::warn!(%service, "not applied: a setting it needs is missing (see the Organizations' ServicesConfigured)");
            continue;
        };
        let name = plan.deployment.name_any();
        deployments
            .patch(&name, &params, &Patch::Apply(with_type(&plan.deployment, "apps/v1", "Deployment")))
            .await
            .map_err(|source| Error::ApplyOwned {
                kind: "Deployment",
                namespace: namespace.to_owned(),
                name: name.clone(),
                source: Box::new(source),
            })?;
        services
            .patch(&name, &params, &Patch::Apply(with_type(&plan.service, "v1", "Service")))
            .await
            .map_err(|source| Error::ApplyOwned {
                kind: "Service",
                namespace: namespace.to_owned(),
                name: name.clone(),
                source: Box::new(source),
            })?;
    }
    let wanted: Vec<String> = planned.iter().map(|(service, _)| object_name(service)).collect();
    let selector = format!("{}={}", labels::MANAGED_BY_KEY, labels::MANAGED_BY);
    let list = ListParams::default().labels(&selector);
    let listed = |kind| {
        move |source| Error::ListOwned {
            kind,
            namespace: namespace.to_owned(),
            owner: "operator".to_owned(),
            source: Box::new(source),
        }
    };
    for deployment in deployments.list_metadata(&list).await.map_err(listed("Deployment"))? {
        let name = deployment.name_any();
        if !wanted.contains(&name) {
            delete(&deployments, namespace, &name, "Deployment").await?;
        }
    }
    for service in services.list_metadata(&list).await.map_err(listed("Service"))? {
        let name = service.name_any();
        if !wanted.contains(&name) {
            delete(&services, namespace, &name, "Service").await?;
        }
    }
    Ok(())
}

async fn delete<K>(api: &Api<K>, namespace: &str, name: &str, kind: &'static str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteOwned {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WorkloadSettings {
        WorkloadSettings {
            namespace: "portcullis".into(),
            image: "ghcr.io/example/portcullis:1.0".into(),
            token_service_replicas: 2,
            scim_service_replicas: 0,
            database_secret: "portcullis-database".into(),
            database_secret_key: "url".into(),
            region_secrets: Default::default(),
            service_keys_secret: "portcullis-service-keys".into(),
            public_base_url: Some("https://id.example.com".into()),
            scim_base_url: Some("https://scim.example.com".into()),
            service_keys_checksum: Some("0123456789abcdef".into()),
            cpu_request: "100m".into(),
            memory_request: "64Mi".into(),
            memory_limit: "256Mi".into(),
            log_level: "info".into(),
            log_format: "json".into(),
            trusted_proxies: "10.0.0.0/8,fd00::/8".into(),
            smtp_secret: Some("portcullis-smtp".into()),
            mail_from: Some("Acme IAM <iam@acme.example>".into()),
            upstream_secret_items: Vec::new(),
            pod_security_context: default_pod_security_context(),
            security_context: default_security_context(),
            owner: None,
            owner_deployment: None,
        }
    }

    fn env<'c>(container: &'c Container, name: &str) -> &'c EnvVar {
        container.env.as_ref().unwrap().iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    fn secret_ref(var: &EnvVar) -> (&str, &str, Option<bool>) {
        let selector = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        (selector.name.as_str(), selector.key.as_str(), selector.optional)
    }

    #[test]
    fn only_services_with_replicas_are_planned_with_image_replicas_and_database_secret() {
        let planned = plan(&settings());
        assert_eq!(planned.len(), 1, "scim-service has 0 replicas");
        let (service, plan) = &planned[0];
        assert_eq!(*service, "token-service");
        let plan = plan.as_ref().unwrap();
        let spec = &plan.deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("ghcr.io/example/portcullis:1.0"));
        assert_eq!(
            secret_ref(env(container, "PORTCULLIS_DATABASE_URL")),
            ("portcullis-database", "url", None)
        );
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap().get(labels::COMPONENT).map(String::as_str),
            Some("token-service")
        );
        let service_labels = plan.service.metadata.labels.as_ref().unwrap();
        assert_eq!(service_labels.get(labels::MANAGED_BY_KEY).map(String::as_str), Some(labels::MANAGED_BY));
    }

    #[test]
    fn each_regional_store_reaches_the_services_from_its_secret() {
        let mut settings = settings();
        settings.scim_service_replicas = 1;
        settings.region_secrets =
            [("eu", "db-eu"), ("us-east", "db-us")].map(|(r, s)| (r.to_owned(), s.to_owned())).into();
        for (_, plan) in plan(&settings) {
            let plan = plan.unwrap();
            let container = &plan.deployment.spec.template.spec.as_ref().unwrap().containers[0];
            assert_eq!(secret_ref(env(container, "PORTCULLIS_STORE_URL_EU")), ("db-eu", "url", None));
            assert_eq!(secret_ref(env(container, "PORTCULLIS_STORE_URL_US_EAST")), ("db-us", "url", None));
            assert_eq!(
                env(container, "PORTCULLIS_STORE_ENVS").value.as_deref(),
                Some("eu=PORTCULLIS_STORE_URL_EU,us-east=PORTCULLIS_STORE_URL_US_EAST")
            );
        }
    }

    #[test]
    fn the_token_service_gets_its_url_keys_and_login_secret_from_the_deployment() {
        let planned = plan(&settings());
        let plan = planned[0].1.as_ref().unwrap();
        let template = &plan.deployment.spec.template;
        let container = &template.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            env(container, "PORTCULLIS_PUBLIC_BASE_URL").value.as_deref(),
            Some("https://id.example.com")
        );
        let keys = "portcullis-service-keys";
        assert_eq!(
            secret_ref(env(container, "PORTCULLIS_KEY_ENCRYPTION_KEY")),
            (keys, "key-encryption-key", None)
        );
        assert_eq!(
            secret_ref(env(container, "PORTCULLIS_PREVIOUS_KEY_ENCRYPTION_KEY")),
            (keys, "previous-key-encryption-key", Some(true))
        );
        assert_eq!(secret_ref(env(container, "PORTCULLIS_LOGIN_SECRET")), (keys, "login-secret", None));
        assert_eq!(
            env(container, "PORTCULLIS_TRUSTED_PROXIES").value.as_deref(),
            Some("10.0.0.0/8,fd00::/8")
        );
        assert_eq!(secret_ref(env(container, "PORTCULLIS_SMTP_URL")), ("portcullis-smtp", "smtp-url", None));
        assert_eq!(
            env(container, "PORTCULLIS_MAIL_FROM").value.as_deref(),
            Some("Acme IAM <iam@acme.example>")
        );
        let pod_ip = env(container, "POD_IP").value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(pod_ip.field_path, "status.podIP");
        let args = container.args.as_ref().unwrap();
        assert!(args.contains(&"--listen=$(POD_IP):8080".to_owned()), "{args:?}");
        assert!(args.contains(&"--metrics-listen=$(POD_IP):9090".to_owned()), "{args:?}");
        assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
        let annotations = template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(annotations.get(SERVICE_KEYS_CHECKSUM).map(String::as_str), Some("0123456789abcdef"));
        let ports: Vec<_> =
            plan.service.spec.as_ref().unwrap().ports.as_ref().unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [SERVICE_PORT, METRICS_PORT]);
    }

    #[test]
    fn the_token_service_mounts_the_upstream_secrets_only_when_some_are_referenced() {
        let volumes = |settings: &WorkloadSettings| {
            let plan = plan(settings)[0].1.clone().unwrap();
            let pod = plan.deployment.spec.template.spec.unwrap();
            (pod.volumes, pod.containers[0].volume_mounts.clone(), pod.containers[0].env.clone().unwrap())
        };
        let mut settings = settings();
        let (none, no_mounts, env_without) = volumes(&settings);
        assert!(none.is_none() && no_mounts.is_none());
        assert!(!env_without.iter().any(|e| e.name == "PORTCULLIS_UPSTREAM_SECRETS_DIR"));

        let item = KeyToPath {
            key: "s_acme_okta_secret".into(),
            path: "acme/okta/secret".into(),
            ..KeyToPath::default()
        };
        settings.upstream_secret_items = vec![item.clone()];
        let (volumes, mounts, env) = volumes(&settings);
        let source = volumes.unwrap()[0].secret.clone().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some(upstream_secrets::MIRROR_SECRET));
        assert_eq!(source.items, Some(vec![item]));
        let mount = &mounts.unwrap()[0];
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (upstream_secrets::MOUNT_PATH, Some(true)));
        let dir = env.iter().find(|e| e.name == "PORTCULLIS_UPSTREAM_SECRETS_DIR").unwrap();
        assert_eq!(dir.value.as_deref(), Some(upstream_secrets::MOUNT_PATH));
    }

    #[test]
    fn the_services_run_locked_down() {
        let planned = plan(&settings());
        let pod = planned[0].1.as_ref().unwrap().deployment.spec.template.spec.clone().unwrap();
        let pod_context = pod.security_context.unwrap();
        assert_eq!((pod_context.run_as_non_root, pod_context.run_as_user), (Some(true), Some(65532)));
        assert_eq!(pod_context.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn a_service_without_its_public_url_is_wanted_but_not_planned() {
        let mut settings = settings();
        settings.scim_service_replicas = 1;
        settings.public_base_url = None;
        let planned = plan(&settings);
        assert_eq!(planned.len(), 2);
        assert!(planned[0].1.is_none(), "no token service without its URL: {:?}", planned[0].0);
        assert!(planned[1].1.is_some(), "the SCIM service has its own");
    }
}

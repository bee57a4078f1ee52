//! The Deployments and Services of `token-service` and `scim-service`,
//! applied by server-side apply with one field manager and labelled, so that
//! a service the configuration no longer wants is deleted.
//!
//! ```text
//!  WorkloadSettings (operator flags) ──plan (pure)──► Deployment + Service per wanted service
//!                                                         │ SSA, field manager portcullis-operator
//!  labelled managed-by=portcullis-operator, component=… ──┴─► anything else so labelled is deleted
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::{Error, FIELD_MANAGER, Result, labels};
use crate::probes;

/// The services the operator can run.
pub const SERVICES: [&str; 2] = ["token-service", "scim-service"];

/// Port each service listens on, in the container and on its Service.
pub const SERVICE_PORT: i32 = 8080;

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
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
    /// Owner of everything applied (the operator's own Deployment), once
    /// [`resolve_owner`] has looked it up.
    pub owner: Option<OwnerReference>,
    /// Name of the operator's own Deployment in `namespace`, if configured.
    pub owner_deployment: Option<String>,
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

/// The Deployment and Service of every wanted service (replicas > 0).
pub fn plan(settings: &WorkloadSettings) -> Vec<(&'static str, ServicePlan)> {
    SERVICES
        .iter()
        .filter_map(|service| {
            let replicas = match *service {
                "token-service" => settings.token_service_replicas,
                _ => settings.scim_service_replicas,
            };
            (replicas > 0).then(|| (*service, plan_service(settings, service, replicas)))
        })
        .collect()
}

fn plan_service(settings: &WorkloadSettings, service: &str, replicas: i32) -> ServicePlan {
    let name = object_name(service);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(settings.namespace.clone()),
        labels: Some(all_labels(service)),
        owner_references: settings.owner.clone().map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: service.to_owned(),
        image: Some(settings.image.clone()),
        args: Some(vec![service.to_owned(), "--listen".to_owned(), format!("0.0.0.0:{SERVICE_PORT}")]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: SERVICE_PORT,
            ..ContainerPort::default()
        }]),
        env: Some(vec![EnvVar {
            name: "PORTCULLIS_DATABASE_URL".to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: settings.database_secret.clone(),
                    key: settings.database_secret_key.clone(),
                    ..SecretKeySelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(settings.cpu_request.clone())),
                ("memory".to_owned(), Quantity(settings.memory_request.clone())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(settings.memory_limit.clone()))])),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(probe(probes::READINESS)),
        liveness_probe: Some(probe(probes::LIVENESS)),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(service)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(all_labels(service)), ..ObjectMeta::default() }),
                spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let service_object = Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(service)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
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
    for (_, plan) in &planned {
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
    let wanted: Vec<String> = planned.iter().map(|(_, p)| p.deployment.name_any()).collect();
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
            cpu_request: "100m".into(),
            memory_request: "64Mi".into(),
            memory_limit: "256Mi".into(),
            owner: None,
            owner_deployment: None,
        }
    }

    #[test]
    fn only_services_with_replicas_are_planned_with_image_replicas_and_database_secret() {
        let planned = plan(&settings());
        assert_eq!(planned.len(), 1, "scim-service has 0 replicas");
        let (service, plan) = &planned[0];
        assert_eq!(*service, "token-service");
        let spec = &plan.deployment.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("ghcr.io/example/portcullis:1.0"));
        let secret =
            container.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("portcullis-database", "url"));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap().get(labels::COMPONENT).map(String::as_str),
            Some("token-service")
        );
        let service_labels = plan.service.metadata.labels.as_ref().unwrap();
        assert_eq!(service_labels.get(labels::MANAGED_BY_KEY).map(String::as_str), Some(labels::MANAGED_BY));
    }
}

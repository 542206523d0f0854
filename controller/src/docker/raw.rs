//! Raw Engine API reads for data bollard's models drop or misname: the tasks'
//! `NetworksAttachments`, and the services' container `Healthcheck` (bollard expects
//! `HealthCheck`; the engine writes `Healthcheck` and reads either, since Go decodes JSON keys
//! case-insensitively).
//!
//! The request goes through the same transport bollard uses (see [`super::transport`]) with
//! the same negotiated API version, and is decoded with our own serde types.

use std::collections::HashMap;

use bollard::models::{Network, Service, TaskSpec};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use serde::Deserialize;

use super::convert::{strip_prefix_len, template_fingerprint};
use super::transport::EngineTransport;
use super::{DockerError, EngineValue, ObservedTask, Op, Resource, TaskAddress};
use crate::redact;
use crate::shared_text::TextPool;

/// Reads over the adapter's [`EngineTransport`], the one bollard uses too, so that connections
/// (and a TLS session or an ssh process) are shared and reused across polls.
#[derive(Clone)]
pub(crate) struct RawClient {
    transport: EngineTransport,
}

impl RawClient {
    /// A client over `transport`.
    pub(crate) fn new(transport: EngineTransport) -> Self {
        RawClient { transport }
    }

    /// GETs `path_and_query` (already prefixed with the API version) and decodes the JSON.
    /// `op`, `kind` and `name` classify an error answer.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        kind: Resource,
        name: &str,
        path_and_query: &str,
    ) -> Result<T, DockerError> {
        let body = self.get(op, kind, name, path_and_query).await?;
        serde_json::from_slice(&body).map_err(|e| undecodable(op, path_and_query, &e))
    }

    /// GETs `path_and_query` and returns the body of a successful answer; an error answer
    /// becomes a classified [`DockerError`].
    async fn get(
        &self,
        op: Op,
        kind: Resource,
        name: &str,
        path_and_query: &str,
    ) -> Result<Bytes, DockerError> {
        let transport = |message: String| DockerError::Transport { op, message };
        let uri = format!("{}{path_and_query}", self.transport.base());
        let request = hyper::Request::get(uri)
            .body(Either::Left(Full::new(Bytes::new())))
            .map_err(|e| DockerError::Undecodable {
                op,
                message: format!("bad URI {path_and_query:?}: {e}"),
            })?;
        let response = self
            .transport
            .request(request)
            .await
            .map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(DockerError::from_response(
                op,
                kind,
                name,
                status.as_u16(),
                &message,
            ));
        }
        Ok(body)
    }

    /// Lists every service, handing each to `convert` as soon as it is decoded.
    ///
    /// One service at a time: decoding the whole answer first (a JSON tree, then bollard's
    /// models) held several megabytes at 500 services for a moment, and what the operator
    /// keeps from the list, allocated amid them, held the heap at that size afterwards.
    pub(crate) async fn list_services<T>(
        &self,
        api_version: &str,
        mut convert: impl FnMut(RawService) -> Option<T>,
    ) -> Result<Vec<T>, DockerError> {
        let path = format!("/v{api_version}/services");
        let body = self
            .get(Op::ListServices, Resource::Service, "", &path)
            .await?;
        decode_each(&body, |service| Ok(convert(service_from_value(service)?)))
            .map_err(|e| undecodable(Op::ListServices, &path, &e))
    }

    /// Reads one service by name or id; `None` when it does not exist.
    pub(crate) async fn inspect_service(
        &self,
        api_version: &str,
        name: &str,
    ) -> Result<Option<RawService>, DockerError> {
        let path = format!("/v{api_version}/services/{name}");
        let service: serde_json::Value = match self
            .get_json(Op::InspectService, Resource::Service, name, &path)
            .await
        {
            Ok(service) => service,
            Err(DockerError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        service_from_value(service)
            .map(Some)
            .map_err(|e| DockerError::Undecodable {
                op: Op::InspectService,
                message: redact::without_quoted(&e.to_string()),
            })
    }

    /// Reads one network by name or id; `None` when it does not exist. (bollard's
    /// `inspect_network` answers a different model than its list; this keeps one.)
    pub(crate) async fn inspect_network(
        &self,
        api_version: &str,
        name: &str,
    ) -> Result<Option<Network>, DockerError> {
        let path = format!("/v{api_version}/networks/{name}");
        match self
            .get_json(Op::InspectNetwork, Resource::Network, name, &path)
            .await
        {
            Ok(network) => Ok(Some(network)),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every task with its network addresses.
    pub(crate) async fn list_tasks(
        &self,
        api_version: &str,
    ) -> Result<Vec<ObservedTask>, DockerError> {
        let path = format!("/v{api_version}/tasks");
        let body = self
            .get(Op::ListTasks, Resource::Service, "", &path)
            .await?;
        // One task at a time, as services are (see `decode_each`); the texts many tasks repeat
        // (status message, error, template fingerprint) one allocation each.
        let mut texts = TextPool::new();
        let mut observed = decode_each(&body, |task: RawTask| {
            Ok(Some(task.into_observed(&mut texts)))
        })
        .map_err(|e| undecodable(Op::ListTasks, &path, &e))?;
        // Without the growth slack: the list is kept until the next change.
        observed.shrink_to_fit();
        Ok(observed)
    }
}

/// An error with its causes (hyper's own message is only "client error (Connect)").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often print their cause already.
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// The engine's error answer: `{"message": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

/// An answer that does not decode, as an error naming the request. serde's messages quote the
/// offending value (`invalid type: string "…"`), which may be an environment value: left out.
fn undecodable(op: Op, path: &str, error: &serde_json::Error) -> DockerError {
    DockerError::Undecodable {
        op,
        message: format!("{path}: {}", redact::without_quoted(&error.to_string())),
    }
}

/// Decodes a JSON array one element at a time, converting each before the next is read.
///
/// A list of every service or task decoded whole first (each element a JSON tree of its
/// spec) holds megabytes for a moment at thousands of objects, and what the operator keeps of
/// each, allocated amid those trees, pins their pages after they are freed: the heap stays at
/// the peak. Converted one by one, the next element's tree reuses the memory of the last.
fn decode_each<E: serde::de::DeserializeOwned, T>(
    body: &[u8],
    convert: impl FnMut(E) -> Result<Option<T>, serde_json::Error>,
) -> Result<Vec<T>, serde_json::Error> {
    let mut decoder = serde_json::Deserializer::from_slice(body);
    let converted = serde::Deserializer::deserialize_seq(
        &mut decoder,
        EachSeq {
            convert,
            converted: Vec::new(),
            element: std::marker::PhantomData,
        },
    )?;
    decoder.end()?;
    Ok(converted)
}

struct EachSeq<E, T, F> {
    convert: F,
    converted: Vec<T>,
    element: std::marker::PhantomData<fn() -> E>,
}

impl<'de, E, T, F> serde::de::Visitor<'de> for EachSeq<E, T, F>
where
    E: serde::de::DeserializeOwned,
    F: FnMut(E) -> Result<Option<T>, serde_json::Error>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        while let Some(element) = seq.next_element::<E>()? {
            let converted = (self.convert)(element).map_err(serde::de::Error::custom)?;
            self.converted.extend(converted);
        }
        Ok(self.converted)
    }
}

/// A service as the engine answers it: bollard's model, plus what that model leaves out.
pub(crate) struct RawService {
    /// bollard's model.
    pub service: Service,
    /// The names of the configs and secrets of `PreviousSpec` (what a rollback restores),
    /// which bollard's model does not have.
    pub previous_mounts: Vec<String>,
}

/// One service of the engine's answer as bollard's model, its healthcheck key fixed.
fn service_from_value(mut service: serde_json::Value) -> Result<RawService, serde_json::Error> {
    fix_healthcheck_key(&mut service);
    let previous_mounts = previous_mounts(&service);
    Ok(RawService {
        service: serde_json::from_value(service)?,
        previous_mounts,
    })
}

/// The `ConfigName`s and `SecretName`s of `PreviousSpec.TaskTemplate.ContainerSpec`.
fn previous_mounts(service: &serde_json::Value) -> Vec<String> {
    let Some(container) = service.pointer("/PreviousSpec/TaskTemplate/ContainerSpec") else {
        return Vec::new();
    };
    [("Configs", "ConfigName"), ("Secrets", "SecretName")]
        .into_iter()
        .flat_map(|(list, name)| {
            container
                .get(list)
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(move |m| m.get(name)?.as_str().map(str::to_owned))
        })
        .collect()
}

/// Renames `Spec.TaskTemplate.ContainerSpec.Healthcheck` to the `HealthCheck` bollard reads.
fn fix_healthcheck_key(service: &mut serde_json::Value) {
    let container = service
        .pointer_mut("/Spec/TaskTemplate/ContainerSpec")
        .and_then(|c| c.as_object_mut());
    if let Some(container) = container
        && let Some(health) = container.remove("Healthcheck")
    {
        container.insert("HealthCheck".to_owned(), health);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    node_id: Option<String>,
    #[serde(default)]
    status: RawTaskStatus,
    #[serde(default)]
    desired_state: String,
    #[serde(default)]
    networks_attachments: Vec<RawAttachment>,
    /// The task's copy of its service's template, kept raw: decoded as the service's is.
    #[serde(default)]
    spec: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawTaskStatus {
    #[serde(default)]
    state: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    container_status: Option<RawContainerStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawContainerStatus {
    #[serde(default)]
    exit_code: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachment {
    network: RawAttachedNetwork,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachedNetwork {
    #[serde(default)]
    spec: HashMap<String, serde_json::Value>,
}

impl RawTask {
    fn into_observed(self, texts: &mut TextPool) -> ObservedTask {
        let template = self.spec.and_then(|mut spec| {
            // The same key fix as for a service, so that both fingerprints read the same model.
            let mut wrapped = serde_json::json!({ "Spec": { "TaskTemplate": spec.take() } });
            fix_healthcheck_key(&mut wrapped);
            let spec = wrapped.pointer_mut("/Spec/TaskTemplate")?.take();
            serde_json::from_value::<TaskSpec>(spec)
                .ok()
                .map(|spec| texts.share(&template_fingerprint(&spec)))
        });
        let mut addresses: Vec<TaskAddress> = self
            .networks_attachments
            .iter()
            .flat_map(|attachment| {
                let network = attachment
                    .network
                    .spec
                    .get("Name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_owned();
                attachment.addresses.iter().map(move |cidr| TaskAddress {
                    network: network.clone(),
                    ip: strip_prefix_len(cidr).to_owned(),
                })
            })
            .collect();
        // Kept until the tasks change; collected from a flat map, one address would have
        // room for four.
        addresses.shrink_to_fit();
        ObservedTask {
            id: self.id,
            service_id: self.service_id,
            slot: self.slot,
            node_id: self.node_id.filter(|n| !n.is_empty()),
            state: EngineValue::parse("Task.Status.State", &self.status.state),
            desired_state: EngineValue::parse("Task.DesiredState", &self.desired_state),
            message: texts.share(&self.status.message),
            error: self
                .status
                .err
                .filter(|e| !e.is_empty())
                .map(|e| texts.share(&e)),
            exit_code: self
                .status
                .container_status
                .and_then(|c| c.exit_code)
                .filter(|code| *code != 0),
            timestamp: self.status.timestamp,
            template,
            addresses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::TaskState;
    use std::sync::Arc;

    #[test]
    fn the_engines_healthcheck_key_is_read() {
        let service = serde_json::json!({"ID": "s1", "Version": {"Index": 3}, "Spec": {
            "Name": "quote", "TaskTemplate": {"ContainerSpec": {
                "Image": "quote:dev",
                "Healthcheck": {"Test": ["CMD", "/healthcheck"], "Interval": 3000000000u64}}}}});
        let service = service_from_value(service).unwrap().service;
        let health = service
            .spec
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap();
        let health = health.health_check.expect("healthcheck read");
        assert_eq!(health.test.unwrap(), ["CMD", "/healthcheck"]);
        assert_eq!(health.interval, Some(3_000_000_000));
    }

    /// A service and its task as Docker 20.10 answers them (trimmed): the task's `Spec` is the
    /// service's `TaskTemplate` without `Runtime`, keys in the same order.
    const SERVICE: &str = r#"{"ID":"s1","Version":{"Index":75180},
        "CreatedAt":"2026-11-26T06:24:08.1Z","UpdatedAt":"2026-11-26T06:24:08.1Z",
        "Spec":{"Name":"api","Labels":{"x":"y"},"TaskTemplate":{"ContainerSpec":{
          "Image":"busybox:dev","Labels":{"b":"2","a":"1"},"Args":["sleep","3600"],"Env":["A=b"],
          "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000}},
          "Resources":{"Limits":{"MemoryBytes":67108864}},"Placement":{},
          "Networks":[{"Target":"net1"}],"ForceUpdate":0,"Runtime":"container"}}}"#;
    const TASK_SPEC: &str = r#"{"ContainerSpec":{
          "Image":"busybox:dev","Labels":{"a":"1","b":"2"},"Args":["sleep","3600"],"Env":["A=b"],
          "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000}},
          "Resources":{"Limits":{"MemoryBytes":67108864}},"Placement":{},
          "Networks":[{"Target":"net1"}],"ForceUpdate":0}"#;

    fn task_with_spec(spec: &str) -> ObservedTask {
        let json = format!(
            r#"{{"ID":"t1","ServiceID":"s1","Spec":{spec},
            "Status":{{"State":"failed","Err":"task: non-zero exit (3)",
                       "Timestamp":"2026-11-26T06:24:09Z","ContainerStatus":{{"ExitCode":3}}}},
            "DesiredState":"shutdown"}}"#
        );
        serde_json::from_str::<RawTask>(&json)
            .unwrap()
            .into_observed(&mut TextPool::new())
    }

    #[test]
    fn a_service_list_is_decoded_and_converted_one_service_at_a_time() {
        let body = br#"[
            {"ID": "s1", "Spec": {"Name": "a", "TaskTemplate": {"ContainerSpec": {
                "Image": "img", "Healthcheck": {"Test": ["CMD", "true"]}}}}},
            {"ID": "s2", "Spec": {"Name": "b"}}
        ]"#;
        let mut seen = Vec::new();
        let converted = decode_each(body, |value| {
            let service = service_from_value(value)?.service;
            seen.push(service.id.clone());
            let health = service
                .spec
                .and_then(|s| s.task_template?.container_spec?.health_check?.test);
            Ok(service.id.map(|id| (id, health)))
        })
        .unwrap();
        assert_eq!(seen, [Some("s1".to_owned()), Some("s2".to_owned())]);
        assert_eq!(
            converted,
            [
                (
                    "s1".to_owned(),
                    Some(vec!["CMD".to_owned(), "true".to_owned()])
                ),
                ("s2".to_owned(), None)
            ],
            "every service, the engine's `Healthcheck` key read"
        );
        for bad in [&b"{}"[..], b"[{\"ID\": 3}]", b"[] []"] {
            let decoded = decode_each(bad, |value| Ok(Some(service_from_value(value)?)));
            assert!(decoded.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_task_list_is_decoded_one_task_at_a_time_and_its_errors_quote_no_value() {
        let body = br#"[
            {"ID": "t1", "ServiceID": "s1", "Slot": 1,
             "Status": {"State": "pending", "Message": "pending task scheduling",
                        "Err": "no suitable node"}},
            {"ID": "t2", "ServiceID": "s1", "Slot": 2,
             "Status": {"State": "pending", "Message": "pending task scheduling",
                        "Err": "no suitable node"}}
        ]"#;
        let mut seen = Vec::new();
        let mut texts = TextPool::new();
        let tasks = decode_each(body, |task: RawTask| {
            seen.push(task.id.clone());
            Ok(Some(task.into_observed(&mut texts)))
        })
        .unwrap();
        assert_eq!(seen, ["t1", "t2"]);
        let slots: Vec<_> = tasks.iter().map(|t| (t.id.as_str(), t.slot)).collect();
        assert_eq!(slots, [("t1", Some(1)), ("t2", Some(2))]);
        // What both say is one text.
        assert_eq!(&*tasks[0].message, "pending task scheduling");
        assert!(Arc::ptr_eq(&tasks[0].message, &tasks[1].message));
        let errors = (&tasks[0].error, &tasks[1].error);
        assert!(matches!(errors, (Some(a), Some(b)) if Arc::ptr_eq(a, b)));

        let bad = br#"[{"ID": "t1", "Slot": "hunter2-in-a-slot"}]"#;
        let error = decode_each(bad, |task: RawTask| {
            Ok(Some(task.into_observed(&mut TextPool::new())))
        })
        .unwrap_err();
        let error = undecodable(Op::ListTasks, "/v1.41/tasks", &error).to_string();
        assert!(error.contains("/v1.41/tasks"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn the_previous_specs_configs_and_secrets_are_read() {
        let service = serde_json::json!({"ID": "s1", "Spec": {"Name": "a"},
            "PreviousSpec": {"Name": "a", "TaskTemplate": {"ContainerSpec": {
                "Configs": [{"ConfigID": "c1", "ConfigName": "conf-0123456789"}],
                "Secrets": [{"SecretID": "s1", "SecretName": "db-9876543210"}]}}}});
        let raw = service_from_value(service).unwrap();
        assert_eq!(raw.previous_mounts, ["conf-0123456789", "db-9876543210"]);
        let none = service_from_value(serde_json::json!({"ID": "s2"})).unwrap();
        assert!(none.previous_mounts.is_empty());
    }

    #[test]
    fn a_task_runs_its_services_template_when_the_fingerprints_match() {
        let service: serde_json::Value = serde_json::from_str(SERVICE).unwrap();
        let service = service_from_value(service).unwrap().service;
        let template = service.spec.unwrap().task_template.unwrap();
        let expected = template_fingerprint(&template);
        let task = task_with_spec(TASK_SPEC);
        assert_eq!(task.template.as_deref(), Some(expected.as_str()));
        assert_eq!(task.exit_code, Some(3));
        assert_eq!(task.timestamp.as_deref(), Some("2026-11-26T06:24:09Z"));
        // Any change of the template (here the image) is another spec.
        let other = task_with_spec(&TASK_SPEC.replace("busybox:dev", "busybox:v2"));
        assert_ne!(other.template, task.template);
        let other = task_with_spec(
            &TASK_SPEC.replace("\"Interval\":1000000000", "\"Interval\":2000000000"),
        );
        assert_ne!(other.template, task.template);
    }

    #[test]
    fn task_addresses_come_from_networks_attachments() {
        // Trimmed from a real `GET /v1.41/tasks` answer of Docker 20.10.
        let json = r#"[{"ID":"t1","ServiceID":"s1","Slot":2,"NodeID":"n1",
            "Status":{"State":"running","Message":"started","ContainerStatus":{}},
            "DesiredState":"running",
            "NetworksAttachments":[{"Network":{"ID":"net1","Spec":{"Name":"my_network"}},
                                    "Addresses":["10.0.1.9/24"]}]}]"#;
        let tasks: Vec<RawTask> = serde_json::from_str(json).unwrap();
        let task = tasks
            .into_iter()
            .next()
            .unwrap()
            .into_observed(&mut TextPool::new());
        assert_eq!(task.slot, Some(2));
        assert_eq!(task.state, EngineValue::Known(TaskState::RUNNING));
        assert_eq!(task.desired_state, EngineValue::Known(TaskState::RUNNING));
        assert_eq!(
            task.addresses,
            vec![TaskAddress {
                network: "my_network".into(),
                ip: "10.0.1.9".into()
            }]
        );
        assert_eq!(
            task.addresses.capacity(),
            1,
            "kept until the tasks change: no slack"
        );
    }
}

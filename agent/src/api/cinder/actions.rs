//! `POST /volumes/{id}/action` and `POST /snapshots/{id}/action`: one action a request, its
//! body typed. Volumes: extend, the attachment bookkeeping Nova drives (os-reserve, os-attach,
//! os-begin_detaching, os-detach and their undos), bootable and read-only flags, and the
//! admin's reset-status, force-delete and force-detach; revert to the latest snapshot (3.40).
//! Snapshots: the admin's reset-status and
//! force-delete.

use super::super::http::{empty, json};
use super::{body, ApiError, Body, Ctx, Gib};
use crate::model::volume::VolumeStatus;
use crate::state::metadata::{MetadataChange, MetadataOf};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Deserialize)]
enum VolumeAction {
    #[serde(rename = "os-extend")]
    Extend { new_size: Gib },
    #[serde(rename = "os-reserve")]
    Reserve,
    #[serde(rename = "os-unreserve")]
    Unreserve,
    #[serde(rename = "os-begin_detaching")]
    BeginDetaching,
    #[serde(rename = "os-roll_detaching")]
    RollDetaching,
    #[serde(rename = "os-attach")]
    Attach {
        #[serde(default)]
        instance_uuid: Option<String>,
        mountpoint: String,
        #[serde(default)]
        host_name: Option<String>,
    },
    #[serde(rename = "os-detach")]
    Detach(Option<DetachArgs>),
    #[serde(rename = "os-force_detach")]
    ForceDetach(Option<DetachArgs>),
    #[serde(rename = "os-reset_status")]
    ResetStatus {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        attach_status: Option<String>,
    },
    #[serde(rename = "os-force_delete")]
    ForceDelete,
    /// To the volume's latest snapshot (3.40).
    #[serde(rename = "revert")]
    Revert { snapshot_id: String },
    #[serde(rename = "os-set_bootable")]
    SetBootable {
        #[serde(deserialize_with = "flag")]
        bootable: bool,
    },
    #[serde(rename = "os-set_image_metadata")]
    SetImageMetadata { metadata: BTreeMap<String, String> },
    #[serde(rename = "os-unset_image_metadata")]
    UnsetImageMetadata { key: String },
    #[serde(rename = "os-show_image_metadata")]
    ShowImageMetadata,
    #[serde(rename = "os-update_readonly_flag")]
    UpdateReadonly {
        #[serde(deserialize_with = "flag")]
        readonly: bool,
    },
}

#[derive(Deserialize)]
struct DetachArgs {
    #[serde(default)]
    attachment_id: Option<String>,
}

#[derive(Deserialize)]
enum SnapshotAction {
    #[serde(rename = "os-reset_status")]
    ResetStatus { status: String },
    #[serde(rename = "os-update_snapshot_status")]
    UpdateStatus {
        status: String,
        #[serde(default)]
        progress: Option<String>,
    },
    #[serde(rename = "os-force_delete")]
    ForceDelete,
}

/// A boolean as Cinder takes one: `true`/`false` or a string naming one (`"True"`, `"1"`, …).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
            "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("{s:?} is not a boolean"))),
        },
        other => Err(serde::de::Error::custom(format!("{other} is not a boolean"))),
    }
}

/// The one action of a body, typed.
async fn action<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    parse(body(req).await?)
}

/// An action without arguments comes with `null` or `{}`: both read as none.
fn parse<T: serde::de::DeserializeOwned>(mut v: serde_json::Value) -> Result<T, ApiError> {
    if let Some(m) = v.as_object_mut() {
        for arg in m.values_mut() {
            if arg.as_object().is_some_and(|o| o.is_empty()) {
                *arg = serde_json::Value::Null;
            }
        }
    }
    serde_json::from_value(v).map_err(|e| super::bad(e.to_string()))
}

fn status(s: &str) -> Result<VolumeStatus, ApiError> {
    VolumeStatus::parse(s).ok_or_else(|| super::bad(format!("{s} is not a valid status")))
}

pub(super) async fn volume(ctx: &Ctx<'_>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    use VolumeStatus::{Attaching, Available, Detaching, InUse};
    let (st, auth) = (&ctx.api.storage, &ctx.auth);
    match action::<VolumeAction>(req).await? {
        VolumeAction::Revert { snapshot_id } if ctx.at(40) => st.revert(auth, id, &snapshot_id).await?,
        VolumeAction::Revert { .. } => return Err(super::bad("The revert action needs microversion 3.40.")),
        VolumeAction::Extend { new_size } => {
            // From 3.42 an in-use volume may be extended where policy allows it; this cloud's
            // does not (the guest would have to be told of the new size).
            if ctx.at(42) && st.get(auth, id)?.status == InUse {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow volume:extend_attached_volume to be performed.".into(),
                ));
            }
            st.extend(auth, id, new_size.0).await?
        }
        VolumeAction::Reserve => st.transition(auth, id, Available, Attaching).await?,
        VolumeAction::Unreserve => st.transition(auth, id, Attaching, Available).await?,
        VolumeAction::BeginDetaching => st.transition(auth, id, InUse, Detaching).await?,
        VolumeAction::RollDetaching => st.transition(auth, id, Detaching, InUse).await?,
        VolumeAction::Attach { instance_uuid, mountpoint, host_name } => {
            let server = instance_uuid
                .ok_or_else(|| super::bad("os-attach needs instance_uuid (attaching to a host is not supported)"))?;
            st.attach(auth, id, &server, &host_name.unwrap_or_default(), &mountpoint).await?;
        }
        VolumeAction::Detach(a) => st.detach(auth, id, a.and_then(|a| a.attachment_id), false).await?,
        VolumeAction::ForceDetach(a) => st.detach(auth, id, a.and_then(|a| a.attachment_id), true).await?,
        VolumeAction::ResetStatus { status: s, attach_status } => {
            let to = match (s, attach_status.as_deref()) {
                (Some(s), _) => status(&s)?,
                (None, Some("detached")) => Available,
                (None, Some("attached")) => InUse,
                (None, Some(other)) => return Err(super::bad(format!("{other} is not a valid attach status"))),
                (None, None) => return Err(super::bad("os-reset_status needs a status")),
            };
            st.reset_status(auth, id, to).await?;
        }
        VolumeAction::ForceDelete => st.delete(auth, id, true).await?,
        VolumeAction::SetBootable { bootable } => {
            st.set_bootable(auth, id, bootable).await?;
            return Ok(empty(StatusCode::OK));
        }
        VolumeAction::SetImageMetadata { metadata } => {
            let change = MetadataChange {
                replace: false,
                set: metadata,
                remove: vec![],
                max_items: super::metadata::ITEMS,
                if_match: None,
            };
            st.set_metadata(auth, MetadataOf::VolumeImage, id, change).await?;
            return Ok(json(StatusCode::OK, &serde_json::json!({"metadata": st.get(auth, id)?.image_metadata})));
        }
        VolumeAction::UnsetImageMetadata { key } => {
            let change = MetadataChange {
                replace: false,
                set: BTreeMap::new(),
                remove: vec![key],
                max_items: super::metadata::ITEMS,
                if_match: None,
            };
            st.set_metadata(auth, MetadataOf::VolumeImage, id, change).await?;
            return Ok(empty(StatusCode::OK));
        }
        VolumeAction::ShowImageMetadata => {
            return Ok(json(StatusCode::OK, &serde_json::json!({"metadata": st.get(auth, id)?.image_metadata})));
        }
        VolumeAction::UpdateReadonly { readonly } => {
            // Cinder keeps it as the volume's `readonly` metadata, `True` or `False`.
            let set = BTreeMap::from([("readonly".to_owned(), if readonly { "True" } else { "False" }.to_owned())]);
            let change = MetadataChange {
                replace: false,
                set,
                remove: vec![],
                max_items: super::metadata::ITEMS,
                if_match: None,
            };
            st.set_metadata(auth, MetadataOf::Volume, id, change).await?;
        }
    }
    Ok(empty(StatusCode::ACCEPTED))
}

pub(super) async fn snapshot(ctx: &Ctx<'_>, req: Request<Incoming>, id: &str) -> Result<Response<Body>, ApiError> {
    let (st, auth) = (&ctx.api.storage, &ctx.auth);
    match action::<SnapshotAction>(req).await? {
        SnapshotAction::ResetStatus { status: s } => st.reset_snapshot_status(auth, id, status(&s)?).await?,
        SnapshotAction::ForceDelete => st.delete_snapshot(auth, id, true).await?,
        SnapshotAction::UpdateStatus { status: s, progress } => {
            st.update_snapshot_status(auth, id, status(&s)?, progress).await?
        }
    }
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_parse_as_clients_send_them() {
        let v = |j| parse::<VolumeAction>(j);
        assert!(matches!(v(json!({"os-reserve": null})), Ok(VolumeAction::Reserve)));
        assert!(matches!(v(json!({"os-reserve": {}})), Ok(VolumeAction::Reserve)));
        assert!(matches!(v(json!({"os-extend": {"new_size": "3"}})), Ok(VolumeAction::Extend { new_size: Gib(3) })));
        assert!(matches!(
            v(json!({"os-set_bootable": {"bootable": "True"}})),
            Ok(VolumeAction::SetBootable { bootable: true })
        ));
        assert!(matches!(
            v(json!({"os-update_readonly_flag": {"readonly": false}})),
            Ok(VolumeAction::UpdateReadonly { readonly: false })
        ));
        assert!(matches!(
            v(json!({"os-force_detach": {"attachment_id": "a"}})),
            Ok(VolumeAction::ForceDetach(Some(_)))
        ));
        for bad in [
            json!({"os-extend": {"new_size": 0}}),
            json!({"os-set_bootable": {"bootable": "maybe"}}),
            json!({"os-migrate_volume": {}}),
            json!({"os-reserve": null, "os-unreserve": null}),
            json!({}),
        ] {
            assert!(v(bad.clone()).is_err(), "{bad}");
        }
        assert!(matches!(
            parse::<SnapshotAction>(json!({"os-reset_status": {"status": "error"}})),
            Ok(SnapshotAction::ResetStatus { .. })
        ));
    }
}

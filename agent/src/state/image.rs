//! Applying Glance's commands: image records and their status transitions. An upload moves an
//! image queued → saving → active (or killed) through conditional transitions, so two uploads to
//! one image cannot both proceed.

use super::apply::{load, not_found, store};
use super::{Kind, Outcome, Refusal, StateError, IMAGES};
use crate::model::image::Image;
use crate::state::ImageCommand;
use redb::WriteTransaction;

pub(super) fn apply(tx: &WriteTransaction, cmd: &ImageCommand) -> Result<Outcome, StateError> {
    match cmd {
        ImageCommand::CreateImage(image) => {
            if load::<Image>(tx, IMAGES, &image.id)?.is_some() {
                return Ok(Err(Refusal::Conflict { kind: Kind::Image, name: image.id.clone() }));
            }
            store(tx, IMAGES, &image.id, image)?;
            Ok(Ok(()))
        }
        ImageCommand::UpdateImage { id, patch } => {
            let Some(mut i) = load::<Image>(tx, IMAGES, id)? else { return Ok(Err(not_found(Kind::Image, id))) };
            i.name = patch.name.clone();
            i.visibility = patch.visibility;
            i.protected = patch.protected;
            i.min_disk = patch.min_disk;
            i.min_ram = patch.min_ram;
            i.disk_format = patch.disk_format;
            i.container_format = patch.container_format;
            i.tags = patch.tags.clone();
            i.properties = patch.properties.clone();
            i.updated_at = patch.updated_at;
            if let Some(owner) = &patch.owner {
                i.owner = owner.clone();
            }
            store(tx, IMAGES, id, &i)?;
            Ok(Ok(()))
        }
        ImageCommand::SetImageStatus { id, from, to, data, updated_at } => {
            let Some(mut i) = load::<Image>(tx, IMAGES, id)? else { return Ok(Err(not_found(Kind::Image, id))) };
            if !from.contains(&i.status) {
                return Ok(Err(Refusal::Conflicts(format!(
                    "Image {id} is {}; this needs it {}",
                    i.status.as_str(),
                    from.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
                ))));
            }
            i.status = *to;
            i.data = data.clone();
            i.updated_at = *updated_at;
            store(tx, IMAGES, id, &i)?;
            Ok(Ok(()))
        }
        ImageCommand::DeleteImage { id } => {
            if tx.open_table(IMAGES)?.remove(id.as_str())?.is_none() {
                return Ok(Err(not_found(Kind::Image, id)));
            }
            Ok(Ok(()))
        }
    }
}

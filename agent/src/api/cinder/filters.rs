//! A listing's filters as Cinder takes them: from 3.31 only the resource's configured filters
//! (and the listing parameters) are taken, any other query key is a 400; from 3.34 a filter
//! may be inexact (`name~=web`: the value contains it, ignoring case).

use super::{ApiError, Ctx};

/// The filters each listing takes (Cinder's resource filters, those of offered resources).
pub(super) const RESOURCE_FILTERS: [(&str, &[&str]); 4] = [
    (
        "volume",
        &[
            "name",
            "status",
            "metadata",
            "bootable",
            "migration_status",
            "availability_zone",
            "group_id",
            "size",
            "created_at",
            "updated_at",
            "glance_metadata",
            "consumes_quota",
        ],
    ),
    ("snapshot", &["name", "status", "volume_id", "metadata", "availability_zone", "consumes_quota"]),
    ("message", &["resource_uuid", "resource_type", "event_id", "request_id", "message_level"]),
    ("pool", &["name", "volume_type"]),
];

/// Query keys every listing takes besides its filters.
const LISTING: &[&str] =
    &["all_tenants", "project_id", "limit", "marker", "offset", "sort", "sort_key", "sort_dir", "with_count"];

/// The filters of one listing: each `(key, value, inexact)`.
pub(super) struct Filters(Vec<(String, String, bool)>);

impl Filters {
    /// The filters among `ctx`'s query that `resource` takes.
    pub fn of(ctx: &Ctx, resource: &str) -> Result<Self, ApiError> {
        let allowed = RESOURCE_FILTERS.iter().find(|(r, _)| *r == resource).map_or(&[][..], |(_, f)| *f);
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        for (k, v) in &ctx.query {
            let (key, like) = match k.strip_suffix('~') {
                Some(base) if ctx.at(34) => (base, true),
                _ => (k.as_str(), false),
            };
            if allowed.contains(&key) {
                out.push((key.to_owned(), v.clone(), like));
            } else if !LISTING.contains(&key) {
                unknown.push(k.clone());
            }
        }
        if ctx.at(31) && !unknown.is_empty() {
            return Err(super::bad(format!("Invalid filters {} are found in query options.", unknown.join(","))));
        }
        Ok(Filters(out))
    }

    /// The value of filter `key`, when given exactly.
    pub fn exact(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _, like)| k == key && !like).map(|(_, v, _)| v.as_str())
    }

    /// Whether the text fields (`field(key)`, None for those that are not text) match every
    /// filter on a text field.
    pub fn matches(&self, field: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|(k, want, like)| match field(k) {
            None => true,
            Some(have) if *like => have.to_lowercase().contains(&want.to_lowercase()),
            Some(have) => have == *want,
        })
    }
}

//! What v1 offered and what a provisioned service is: the catalog (`af services`' list,
//! `/info/services`, cfoundry's `/services/v1/offerings`) and the record of a service. Plain
//! data, which the state holds and the services' operations (`services.rs`) work on.

use serde_json::{Value, json};

/// One service on offer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offering {
    pub(crate) vendor: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) description: &'static str,
    pub(crate) port: u16,
    pub(crate) tags: &'static [&'static str],
}

/// What AppFog v1 offered (its `af services` listing).
pub(crate) const CATALOG: [Offering; 5] = [
    Offering {
        vendor: "mysql",
        version: "5.1",
        kind: "database",
        description: "MySQL database service",
        port: 3306,
        tags: &["mysql", "mysql-5.1", "relational"],
    },
    Offering {
        vendor: "postgresql",
        version: "9.1",
        kind: "database",
        description: "PostgreSQL database service",
        port: 5432,
        tags: &["postgresql", "postgresql-9.1", "relational"],
    },
    Offering {
        vendor: "mongodb",
        version: "2.0",
        kind: "document",
        description: "MongoDB NoSQL store",
        port: 27017,
        tags: &["mongodb", "mongodb-2.0", "nosql", "document"],
    },
    Offering {
        vendor: "redis",
        version: "2.2",
        kind: "key-value",
        description: "Redis key-value store service",
        port: 6379,
        tags: &["redis", "redis-2.2", "key-value", "nosql"],
    },
    Offering {
        vendor: "rabbitmq",
        version: "2.4",
        kind: "generic",
        description: "RabbitMQ message queue",
        port: 5672,
        tags: &["rabbitmq", "rabbitmq-2.4", "amqp"],
    },
];

pub(crate) fn offering(vendor: &str, version: Option<&str>) -> Option<&'static Offering> {
    CATALOG
        .iter()
        .find(|o| o.vendor == vendor && version.is_none_or(|v| v == o.version))
}

/// A provisioned service.
#[derive(Clone, Debug)]
pub(crate) struct Service {
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) offering: &'static Offering,
    pub(crate) credentials: Value,
    pub(crate) created: u64,
    pub(crate) infra: Option<String>,
}

impl Service {
    /// `label` in `VCAP_SERVICES`: `<vendor>-<version>`.
    pub(crate) fn label(&self) -> String {
        format!("{}-{}", self.offering.vendor, self.offering.version)
    }

    /// The document `GET /services` lists (af `services`, cfoundry).
    pub(crate) fn document(&self) -> Value {
        let mut doc = json!({
            "name": self.name,
            "type": self.offering.kind,
            "vendor": self.offering.vendor,
            "version": self.offering.version,
            "tier": "free",
            "options": {},
            "meta": {"version": 1, "created": self.created},
        });
        if let Some(infra) = &self.infra {
            doc["infra"] = json!({"provider": infra, "name": infra});
        }
        doc
    }
}

/// Sets `root[path[0]][path[1]]…` to `value`, making the objects on the way.
fn insert_at(root: &mut Value, path: &[&str], value: Value) {
    let mut node = root;
    for key in path {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("made an object above")
            .entry(*key)
            .or_insert(Value::Null);
    }
    *node = value;
}

/// `GET /info/services`: `{type: {vendor: {version: {…, tiers}}}}`, as af reads it.
pub(crate) fn info_services() -> Value {
    let mut out = json!({});
    for offering in &CATALOG {
        insert_at(
            &mut out,
            &[offering.kind, offering.vendor, offering.version],
            json!({
                "id": format!("{}-{}", offering.vendor, offering.version),
                "vendor": offering.vendor,
                "version": offering.version,
                "type": offering.kind,
                "description": offering.description,
                "tiers": {"free": {"options": {}, "order": 1, "description": "Free offering"}},
            }),
        );
    }
    out
}

/// `GET /services/v1/offerings`: `{type: {vendor: {provider: {version: {…, plans}}}}}`, as
/// cfoundry reads it.
pub(crate) fn offerings() -> Value {
    let mut out = json!({});
    for offering in &CATALOG {
        insert_at(
            &mut out,
            &[offering.kind, offering.vendor, "core", offering.version],
            json!({
                "label": format!("{}-{}", offering.vendor, offering.version),
                "vendor": offering.vendor,
                "version": offering.version,
                "type": offering.kind,
                "description": offering.description,
                "plans": ["free"],
                "supported_versions": [offering.version],
                "version_aliases": {"current": offering.version},
                "provider": "core",
                "active": true,
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_documents() {
        assert_eq!(
            info_services()["key-value"]["redis"]["2.2"]["tiers"]["free"]["order"],
            1
        );
        let offered = offerings();
        assert_eq!(
            offered["database"]["mysql"]["core"]["5.1"]["plans"],
            json!(["free"])
        );
        assert!(offering("mysql", Some("9.9")).is_none());
    }
}

//! `/info` and AppFog's `/info/infras`, `/info/runtimes`: what the platform offers, and (for a
//! user) their usage and limits.

use serde_json::{Value, json};

use super::Platform;

impl Platform {
    /// `GET /info`; with a user, also their usage, limits and the frameworks on offer.
    pub async fn info(&self, user: Option<&str>) -> Value {
        let mut info = json!({
            "name": "vcap",
            "build": format!("afemu-{}", env!("CARGO_PKG_VERSION")),
            "support": "https://github.com/afemu/afemu",
            "version": 0.999,
            "description": "AppFog v1, emulated locally by afemu",
            "allow_debug": false,
        });
        if let Some(user) = user {
            let limits = self.inner.config.limits;
            let (apps, memory, services) = {
                let state = self.state();
                (
                    state.apps_of(user).count(),
                    state.memory_in_use(user),
                    state.services_of(user).count(),
                )
            };
            info["user"] = json!(user);
            info["limits"] = json!({
                "memory": limits.memory_mb,
                "app_uris": limits.app_uris,
                "services": limits.services,
                "apps": limits.apps,
            });
            info["usage"] = json!({"memory": memory, "apps": apps, "services": services});
            // What the DEA can run, as v1's DEAs advertised it.
            info["frameworks"] = self.inner.dea.frameworks().await;
        }
        info
    }

    /// `GET /info/infras` (AppFog): the infrastructures and their app domains.
    pub fn infras(&self) -> Value {
        let domain = &self.inner.config.domain;
        json!([
            {"infra": "aws", "description": "AWS US East - Virginia", "base": domain},
            {"infra": "eu-aws", "description": "AWS EU West - Ireland", "base": "eu01.aws.af.cm"},
            {"infra": "ap-aws", "description": "AWS Asia SE - Singapore", "base": "ap01.aws.af.cm"},
            {"infra": "rs", "description": "Rackspace AZ 1 - Dallas", "base": "rs.af.cm"},
            {"infra": "hp", "description": "HP AZ 2 - Las Vegas", "base": "hp.af.cm"},
        ])
    }

    /// `GET /info/runtimes`: the runtimes on offer (af reads it for `start --debug`).
    pub async fn runtimes(&self) -> Value {
        crate::dea::frameworks::runtimes(&self.inner.dea.frameworks().await)
    }
}

//! NATS decentralized auth for tests, without `nsc`: an operator, an account with JetStream
//! and a user, each an NKey pair, their JWTs signed by the level above, a server
//! configuration that trusts the operator and knows the account (memory resolver), and the
//! user's creds file.
//!
//! The JWTs follow the NATS JWT v2 layout: a `{"typ":"JWT","alg":"ed25519-nkey"}` header,
//! claims whose `nats` object holds the type and limits (-1: unlimited), and an Ed25519
//! signature by the issuer's key, all three base64url without padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// Signs `claims` for `subject` with `issuer`'s key.
fn sign(issuer: &KeyPair, subject: &KeyPair, name: &str, nats: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        // Unique per token; the server does not check how it was made.
        "jti": format!("{}{}", subject.public_key(), name).to_ascii_uppercase(),
        "iat": super::super::unix_now(),
        "iss": issuer.public_key(),
        "sub": subject.public_key(),
        "name": name,
        "nats": nats,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The trust root.
pub struct Operator {
    key: KeyPair,
}

impl Operator {
    /// A new operator.
    pub fn new() -> Operator {
        Operator {
            key: KeyPair::new_operator(),
        }
    }

    /// A new account of this operator, with JetStream allowed.
    pub fn account(&self) -> Account {
        let key = KeyPair::new_account();
        let jwt = sign(
            &self.key,
            &key,
            "hooks",
            json!({
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
                },
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account",
                "version": 2,
            }),
        );
        Account { key, jwt }
    }

    /// `nats-server` settings that trust this operator and preload `account`, plus the
    /// system account JetStream needs.
    pub fn server_config(&self, account: &Account) -> String {
        let operator_jwt = sign(
            &self.key,
            &self.key,
            "test-operator",
            json!({ "type": "operator", "version": 2 }),
        );
        let system = KeyPair::new_account();
        let system_jwt = sign(
            &self.key,
            &system,
            "SYS",
            json!({ "type": "account", "version": 2 }),
        );
        format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {}: \"{}\"\n}}\n",
            account.key.public_key(),
            account.jwt,
            sys = system.public_key(),
        )
    }
}

/// An account: its key and the JWT its operator signed.
pub struct Account {
    key: KeyPair,
    jwt: String,
}

impl Account {
    /// A new user of this account, allowed everything the account is.
    pub fn user(&self) -> User {
        let key = KeyPair::new_user();
        let jwt = sign(
            &self.key,
            &key,
            "hookrelay",
            json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        User { key, jwt }
    }
}

/// A user: its key and the JWT its account signed.
pub struct User {
    key: KeyPair,
    jwt: String,
}

impl User {
    /// The user's seed (`SU…`).
    pub fn seed(&self) -> String {
        self.key.seed().unwrap()
    }

    /// The creds file, as `nsc generate creds` writes it.
    pub fn creds(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            self.jwt,
            self.seed()
        )
    }
}

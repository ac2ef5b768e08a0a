//! `fdb-sink token`: mints an HS256 API token. A development tool for local
//! use and demos; production tokens come from the identity provider.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::UsageError;
use crate::api::auth::{mint_hs256, read_secret, Claims, Role};
use crate::record::valid_id;

/// Arguments of `fdb-sink token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The HS256 secret, the same file `serve --jwt-secret-file` reads.
    #[arg(long, env = "FDB_SINK_JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: PathBuf,

    /// The token's `tenant_id`: 1-128 chars of [A-Za-z0-9._:@-].
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// The token's `user_id`: 1-128 chars of [A-Za-z0-9._:@-].
    #[arg(long, value_name = "USER")]
    pub user: String,

    /// `user` sees its own sessions; `admin` the whole tenant.
    #[arg(long, value_enum, default_value = "user")]
    pub role: Role,

    /// Lifetime of the token (e.g. 15m, 1h, 7d); at least 1s.
    #[arg(long, default_value = "1h", value_parser = crate::timespec::duration_arg,
          value_name = "DURATION")]
    pub ttl: Duration,
}

/// Refuses claims no server accepts: an id a record cannot carry, or a
/// token that is expired when minted.
pub fn check_args(args: &TokenArgs) -> Result<(), UsageError> {
    for (flag, id) in [("--tenant", &args.tenant), ("--user", &args.user)] {
        if !valid_id(id) {
            return Err(UsageError(format!(
                "{flag} {id:?}: --tenant and --user must be 1-128 chars of [A-Za-z0-9._:@-]"
            )));
        }
    }
    if args.ttl.is_zero() {
        return Err(UsageError(
            "--ttl 0s mints a token that is already expired: give a lifetime of at least 1s \
             (e.g. 15m, 1h)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let secret = read_secret(&args.jwt_secret_file)?;
    let claims = Claims {
        tenant_id: args.tenant,
        user_id: args.user,
        role: args.role,
        exp: jsonwebtoken::get_current_timestamp() + args.ttl.as_secs(),
    };
    let token = mint_hs256(&secret, &claims).context("signing the token")?;
    if args.ttl > crate::api::auth::DEFAULT_MAX_LIFETIME {
        eprintln!(
            "token: warning: --ttl {}s is over 7d: the API refuses such a token unless it \
             runs with --jwt-max-lifetime at least as long",
            args.ttl.as_secs()
        );
    }
    println!("{token}");
    Ok(())
}

//! `fdb-sink token`: mints an HS256 API token. A development tool for local
//! use and demos; production tokens come from the identity provider.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::api::auth::{mint_hs256, read_secret, Claims, Role};
use crate::record::valid_id;

/// Arguments of `fdb-sink token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The HS256 secret, the same file `serve --jwt-secret-file` reads.
    #[arg(long, env = "FDB_SINK_JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: PathBuf,

    /// The token's `tenant_id`.
    #[arg(long, value_name = "TENANT")]
    pub tenant: String,

    /// The token's `user_id`.
    #[arg(long, value_name = "USER")]
    pub user: String,

    /// `user` sees its own sessions; `admin` the whole tenant.
    #[arg(long, value_enum, default_value = "user")]
    pub role: Role,

    /// Lifetime of the token (e.g. 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = crate::timespec::duration_arg,
          value_name = "DURATION")]
    pub ttl: Duration,
}

/// Prints the token on stdout.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        valid_id(&args.tenant) && valid_id(&args.user),
        "--tenant and --user must be 1-128 chars of [A-Za-z0-9._:@-]"
    );
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

//! `telehealth login` and `telehealth logout`: a person signs in from the command line with
//! their professional identity (device authorization grant, RFC 8628: they approve on their
//! phone or computer), or under `telehealth up` as a demo member; the device's key, its
//! certificate and the session's tokens are kept in the login folder, readable by the user only,
//! and `telehealth call` and `export` use them, refreshing the access token when it expires.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use telehealth_kit::{
    Settings,
    pki::{new_device_request, write_file},
};
use telehealth_proto::v1::{self as pb, auth_service_client::AuthServiceClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::connection::Connection;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The sign-in provider (`ListProviders`); `development` signs in as a demo member under
    /// `telehealth up`.
    #[arg(long, default_value = "psc")]
    pub provider: String,
    /// The RPPS number of the demo member (development sign-in).
    #[arg(long)]
    pub rpps: Option<String>,
    /// The organisation to sign in for, when the person is a member of several.
    #[arg(long)]
    pub org: Option<String>,
    /// Passed on to the provider.
    #[arg(long)]
    pub login_hint: Option<String>,
    /// What to call this device in the lists of devices.
    #[arg(long, default_value = "Ligne de commande")]
    pub device_name: String,
    /// The gateway's sign-in port; default from the suite's `connection.json`.
    #[arg(long)]
    pub sign_in: Option<SocketAddr>,
    /// The gateway's main port; default from `connection.json`.
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    #[command(flatten)]
    pub folder: LoginFolder,
}

#[derive(Debug, Args)]
pub struct LoginFolder {
    /// Where the login is kept. Default `$XDG_CONFIG_HOME/telehealth/login` (or
    /// `~/.config/telehealth/login`).
    #[arg(long)]
    pub login_dir: Option<PathBuf>,
}

impl LoginFolder {
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.login_dir {
            return Ok(dir.clone());
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .context("no HOME: give --login-dir")?;
        Ok(config.join("telehealth").join("login"))
    }
}

/// What `login` keeps besides the key and certificate files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub gateway: SocketAddr,
    pub org: String,
    pub session_id: String,
    pub access_token: String,
    /// Unix seconds.
    pub access_expires: i64,
    pub refresh_token: String,
    /// The device certificate's validity, Unix seconds (0: unknown, never renewed here).
    #[serde(default)]
    pub certificate_issued: i64,
    #[serde(default)]
    pub certificate_expires: i64,
}

impl Login {
    pub fn cert_file(dir: &Path) -> PathBuf {
        dir.join("device.pem")
    }
    pub fn key_file(dir: &Path) -> PathBuf {
        dir.join("device-key.pem")
    }
    fn file(dir: &Path) -> PathBuf {
        dir.join("session.json")
    }

    /// The login kept in `dir`, if any.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Login>> {
        match std::fs::read(Login::file(dir)) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).context("the login file is damaged")?,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).context("cannot read the login"),
        }
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        write_file(&Login::file(dir), &serde_json::to_vec_pretty(self)?, true)?;
        Ok(())
    }

    fn take(&mut self, tokens: pb::Tokens) {
        self.access_token = tokens.access_token;
        self.access_expires = tokens.access_token_expire_time.map_or(0, |t| t.seconds);
        self.refresh_token = tokens.refresh_token;
        self.session_id = tokens.session_id;
    }

    fn take_device(&mut self, device: Option<&pb::Device>) {
        let seconds = |t: Option<&prost_types::Timestamp>| t.map_or(0, |t| t.seconds);
        self.certificate_issued = seconds(device.and_then(|d| d.enrol_time.as_ref()));
        self.certificate_expires = seconds(device.and_then(|d| d.expire_time.as_ref()));
    }

    /// Whether the device certificate is in the last third of its validity.
    fn certificate_due(&self, now: i64) -> bool {
        let lifetime = self.certificate_expires - self.certificate_issued;
        self.certificate_expires > 0
            && lifetime > 0
            && self.certificate_expires - now < lifetime / 3
    }

    /// Renews the device certificate for a new key (the old one is revoked by the suite) and
    /// keeps the new key, certificate and tokens.
    async fn renew_certificate(&mut self, dir: &Path, channel: Channel) -> anyhow::Result<()> {
        let (key_pem, csr_pem) = new_device_request()?;
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", self.access_token).parse()?;
        let mut request = tonic::Request::new(pb::RenewDeviceRequest { csr_pem });
        request.metadata_mut().insert("authorization", bearer);
        let renewed = AuthServiceClient::new(channel)
            .renew_device(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "the device certificate cannot be renewed ({}): telehealth login",
                    status.message()
                )
            })?
            .into_inner();
        // Both written aside, then swapped: a key and a certificate that do not match would
        // lock the login out.
        let staged = |file: PathBuf| file.with_extension("pem.new");
        write_file(&staged(Login::key_file(dir)), key_pem.as_bytes(), true)?;
        write_file(
            &staged(Login::cert_file(dir)),
            renewed.certificate_pem.as_bytes(),
            false,
        )?;
        std::fs::rename(staged(Login::key_file(dir)), Login::key_file(dir))?;
        std::fs::rename(staged(Login::cert_file(dir)), Login::cert_file(dir))?;
        self.take(renewed.tokens.context("the renewal answered no tokens")?);
        self.take_device(renewed.device.as_ref());
        self.save(dir)?;
        eprintln!("certificat de l'appareil renouvelé");
        Ok(())
    }

    /// A channel to the gateway with the login's certificate and a fresh access token
    /// (refreshed and saved when it expires within a minute; the certificate renewed in the
    /// last third of its validity).
    pub async fn channel(&mut self, dir: &Path, settings: &Settings) -> anyhow::Result<Channel> {
        let gateway = self.gateway;
        let connect = || {
            crate::connection::gateway_channel(
                settings,
                gateway,
                Login::cert_file(dir),
                Login::key_file(dir),
            )
        };
        let channel = connect().await?;
        if self.access_expires - 60 <= jiff::Timestamp::now().as_second() {
            let refreshed = AuthServiceClient::new(channel.clone())
                .refresh(pb::RefreshRequest {
                    refresh_token: self.refresh_token.clone(),
                })
                .await
                .map_err(|status| {
                    anyhow::anyhow!(
                        "the session cannot be renewed ({}): telehealth login",
                        status.message()
                    )
                })?
                .into_inner()
                .tokens
                .context("the refresh answered no tokens")?;
            self.take(refreshed);
            self.save(dir)?;
        }
        if self.certificate_due(jiff::Timestamp::now().as_second()) {
            self.renew_certificate(dir, channel).await?;
            return connect().await;
        }
        Ok(channel)
    }
}

/// `telehealth login`.
pub async fn login(args: LoginArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let connection: Option<Connection> = std::fs::read(settings.data_dir.join("connection.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let sign_in = args
        .sign_in
        .or(connection.as_ref().and_then(|c| c.sign_in))
        .context("no --sign-in and no running suite described in connection.json")?;
    let gateway = args
        .gateway
        .or(connection.as_ref().and_then(|c| c.gateway))
        .context("no --gateway and no running suite described in connection.json")?;
    let dir = args.folder.dir()?;
    let ca = std::fs::read(settings.gateway_server_tls().ca).context("the gateway's CA")?;
    let channel = Channel::from_shared(format!("https://{sign_in}"))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the sign-in port at {sign_in}"))?;
    let mut client = AuthServiceClient::new(channel);
    let (key_pem, csr_pem) = new_device_request()?;
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());

    let verified = if args.provider == "development" {
        let rpps = args
            .rpps
            .clone()
            .context("the development sign-in needs --rpps (see `telehealth up`'s summary)")?;
        client
            .development_sign_in(pb::DevelopmentSignInRequest {
                rpps_number: rpps,
                csr_pem: csr_pem.clone(),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner()
    } else {
        let started = client
            .start_device_sign_in(pb::StartDeviceSignInRequest {
                provider: args.provider.clone(),
                csr_pem: csr_pem.clone(),
                login_hint: args.login_hint.clone().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        println!(
            "Pour vous connecter, ouvrez {} et saisissez le code {}",
            started.verification_uri, started.user_code
        );
        if !started.verification_uri_complete.is_empty() {
            println!("(ou directement : {})", started.verification_uri_complete);
        }
        let interval = Duration::from_secs(u64::from(started.interval_seconds.max(1)));
        loop {
            tokio::time::sleep(interval).await;
            let result = client
                .poll_device_sign_in(pb::PollDeviceSignInRequest {
                    sign_in_id: started.sign_in_id.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if !result.pending {
                break result;
            }
        }
    };
    let org = match (&args.org, verified.memberships.as_slice()) {
        (Some(org), _) => org.clone(),
        (None, [only]) => only.org_id.clone(),
        (None, several) => bail!(
            "member of several organisations: choose one with --org ({})",
            several
                .iter()
                .map(|m| m.org_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let enrolled = client
        .complete_sign_in(pb::CompleteSignInRequest {
            ticket: verified.ticket,
            org_id: org.clone(),
            csr_pem,
            device_name: args.device_name.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    write_file(&Login::key_file(&dir), key_pem.as_bytes(), true)?;
    write_file(
        &Login::cert_file(&dir),
        enrolled.certificate_pem.as_bytes(),
        false,
    )?;
    let mut login = Login {
        gateway,
        org: org.clone(),
        session_id: String::new(),
        access_token: String::new(),
        access_expires: 0,
        refresh_token: String::new(),
        certificate_issued: 0,
        certificate_expires: 0,
    };
    login.take(enrolled.tokens.context("no tokens")?);
    login.take_device(enrolled.device.as_ref());
    login.save(&dir)?;
    println!(
        "connecté pour {org} ; connexion enregistrée dans {}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `telehealth logout`: ends the session at the suite and forgets the login.
pub async fn logout(folder: LoginFolder, settings: &Settings) -> anyhow::Result<ExitCode> {
    let dir = folder.dir()?;
    let Some(mut login) = Login::load(&dir)? else {
        println!("aucune connexion enregistrée");
        return Ok(ExitCode::SUCCESS);
    };
    let ended = async {
        let channel = login.channel(&dir, settings).await?;
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", login.access_token).parse()?;
        let mut request = tonic::Request::new(pb::SignOutRequest {});
        request.metadata_mut().insert("authorization", bearer);
        AuthServiceClient::new(channel)
            .sign_out(request)
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        anyhow::Ok(())
    }
    .await;
    for file in [
        Login::file(&dir),
        Login::key_file(&dir),
        Login::cert_file(&dir),
    ] {
        let _ = std::fs::remove_file(file);
    }
    match ended {
        Ok(()) => println!("déconnecté"),
        Err(error) => {
            println!("connexion oubliée ici ; la session n'a pas pu être close : {error}")
        }
    }
    Ok(ExitCode::SUCCESS)
}

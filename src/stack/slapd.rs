//! A private OpenLDAP `slapd` with its own cn=config under the data directory.

use super::process::{self, io, RunAs, Service};
use crate::settings::Secret;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

pub struct Slapd {
    pub port: u16,
    service: Service,
}

/// The DNs of a directory rooted at `base` (e.g. `dc=pglab,dc=local`).
pub fn admin_dn(base: &str) -> String {
    format!("cn=admin,{base}")
}

/// `{SSHA}` hash of a password, as slapd stores it.
fn ssha(password: &str) -> String {
    let salt: [u8; 8] = rand::random();
    let mut h = Sha1::new();
    h.update(password.as_bytes());
    h.update(salt);
    let mut bytes = h.finalize().to_vec();
    bytes.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn config_ldif(db_dir: &Path, base: &str, password: &str) -> String {
    let schemas: String = ["core", "cosine", "nis", "inetorgperson"]
        .iter()
        .map(|s| format!("include: file:///etc/ldap/schema/{s}.ldif\n\n"))
        .collect();
    format!(
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n\
         dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
         olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n\
         dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
         {schemas}\
         dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcFrontendConfig\n\
         olcDatabase: {{-1}}frontend\n\n\
         dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\nolcDatabase: {{0}}config\n\
         olcAccess: {{0}}to * by * none\n\n\
         dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\n\
         olcDatabase: {{1}}mdb\nolcSuffix: {base}\nolcDbDirectory: {db}\nolcRootDN: {admin}\nolcRootPW: {pw}\n\
         olcDbMaxSize: 1073741824\nolcDbIndex: objectClass eq\nolcDbIndex: uid eq\nolcDbIndex: member eq\n\
         olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none\n\
         olcAccess: {{1}}to * by self read by * none\n",
        db = db_dir.display(),
        admin = admin_dn(base),
        pw = ssha(password),
    )
}

fn base_ldif(base: &str) -> String {
    let dc = base
        .split(',')
        .next()
        .and_then(|rdn| rdn.strip_prefix("dc="))
        .unwrap_or("pglab");
    format!(
        "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: pglab\n\n\
         dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{base}\nobjectClass: organizationalUnit\nou: groups\n"
    )
}

impl Slapd {
    pub async fn start(
        dir: &Path,
        port: u16,
        base: &str,
        password: &Secret,
    ) -> process::Result<Self> {
        let slapd = process::find_binary("slapd", &[], "slapd")?;
        let slapadd = process::find_binary("slapadd", &[], "slapd")?;
        let run_as = RunAs::for_root("openldap", "slapd")?;
        let config_dir = dir.join("config");
        let db_dir = std::path::absolute(dir.join("db")).map_err(io("ldap db dir"))?;
        if !config_dir.join("cn=config.ldif").exists() {
            std::fs::create_dir_all(&config_dir).map_err(io(config_dir.display().to_string()))?;
            std::fs::create_dir_all(&db_dir).map_err(io(db_dir.display().to_string()))?;
            let config = dir.join("config.ldif");
            std::fs::write(&config, config_ldif(&db_dir, base, password.expose()))
                .map_err(io("config.ldif"))?;
            let mut cmd = Command::new(&slapadd);
            cmd.args(["-n0", "-F"])
                .arg(&config_dir)
                .arg("-l")
                .arg(&config);
            let result = process::run("slapadd (cn=config)", cmd).await;
            let _ = std::fs::remove_file(&config);
            result?;
            let entries = dir.join("base.ldif");
            std::fs::write(&entries, base_ldif(base)).map_err(io("base.ldif"))?;
            let mut cmd = Command::new(&slapadd);
            cmd.args(["-n1", "-F"])
                .arg(&config_dir)
                .arg("-l")
                .arg(&entries);
            process::run("slapadd (base entries)", cmd).await?;
        }
        if let Some(user) = &run_as {
            user.check_reachable(dir)?;
            user.chown_tree(dir)?;
        }
        let url = format!("ldap://127.0.0.1:{port}/");
        let mut cmd = Command::new(slapd);
        cmd.args(["-d", "stats", "-h", &url, "-F"]).arg(&config_dir);
        if let Some(user) = &run_as {
            // slapd drops privileges itself after binding the port.
            cmd.args(["-u", user.name, "-g", user.name]);
        }
        let log: PathBuf = dir.with_extension("log");
        // SIGINT makes slapd close its database cleanly.
        let mut service = Service::spawn("slapd", cmd, &log, nix::sys::signal::Signal::SIGINT)?;
        process::wait_ready(&mut service, Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await?;
        Ok(Self { port, service })
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }
}

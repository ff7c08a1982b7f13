//! The tar archive of an export: the contract's JSON and the images as stored, with an index of
//! every file's size and SHA-256 and a note for the patient.

use std::{io::Write, path::Path};

use anyhow::Context;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Name and version of the archive's layout, in `index.json`.
const FORMAT: &str = "telehealth-patient-archive/1";

/// The archive being written, and what it holds so far.
pub struct Archive {
    builder: tar::Builder<std::fs::File>,
    files: Vec<Value>,
}

impl Archive {
    pub fn create(path: &Path) -> anyhow::Result<Archive> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Archive {
            builder: tar::Builder::new(file),
            files: Vec::new(),
        })
    }

    pub fn add(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        header.set_cksum();
        self.builder
            .append_data(&mut header, path, bytes)
            .with_context(|| format!("cannot add {path} to the archive"))?;
        self.files.push(json!({
            "path": path,
            "bytes": bytes.len(),
            "sha256": hex::encode(Sha256::digest(bytes)),
        }));
        Ok(())
    }

    pub fn add_json(&mut self, path: &str, value: &Value) -> anyhow::Result<()> {
        self.add(path, &serde_json::to_vec_pretty(value)?)
    }

    /// Adds the index and the note for the patient, and closes the archive; the number of
    /// files it holds.
    pub fn finish(mut self, patient: &str) -> anyhow::Result<usize> {
        self.add("LISEZMOI.txt", README.as_bytes())?;
        let index = json!({
            "format": FORMAT,
            "patient_id": patient,
            "exported_at": jiff::Timestamp::now().to_string(),
            "files": self.files,
        });
        let count = self.files.len() + 1;
        self.add_json("index.json", &index)?;
        let mut file = self.builder.into_inner()?;
        file.flush()?;
        file.sync_all()?;
        Ok(count)
    }
}

/// What the patient reads first.
const README: &str = "\
Export de vos données de téléconsultation et de télé-expertise (droit d'accès, RGPD art. 15)

patient.json            votre dossier administratif : identité et son statut (INS), coordonnées,
                        consentements, partages avec d'autres établissements, opposition
appointments/           vos rendez-vous de téléconsultation et leur historique
expertise/              les demandes de télé-expertise vous concernant : question, échanges,
                        compte rendu de l'expert, images telles qu'elles ont été transmises
wounds/                 le suivi de vos plaies : chaque évaluation (et ses corrections), alertes,
                        photos telles qu'elles ont été enregistrées
index.json              la liste des fichiers avec leur taille et leur empreinte SHA-256

Les fichiers .json suivent le format JSON des messages du contrat telehealth.v1 ; les dates sont
en temps universel (UTC).
";

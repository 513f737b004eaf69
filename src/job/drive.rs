//! The Drive work of a grant, as `DRIVE_SYNC` says: one `files.get` of the
//! `appDataFolder`, or every page of its `files.list`.

use super::run::{Attempt, Prepaid, Run};
use super::{Count, GoogleCall, OfflineJob};
use crate::domain::AccessToken;
use crate::google::{DriveApi, DriveError};
use crate::grant::decide::{Failure, disposition};
use crate::ports::Ports;
use crate::store::{DriveOutcome, Grant};

impl<P: Ports> OfflineJob<P> {
    /// `DRIVE_SYNC=get`: one `files.get` of the `appDataFolder`.
    pub(super) async fn reach_drive(
        &self,
        run: &Run<'_>,
        token: &AccessToken,
        prepaid: &Prepaid,
    ) -> Result<DriveOutcome, Attempt<DriveError>> {
        self.retrying(
            run,
            Some((GoogleCall::FilesGet, prepaid)),
            || {
                run.counters.bump(Count::drive_calls);
                self.drive.app_data_folder(token)
            },
            |e| disposition(Failure::Drive(e)),
        )
        .await?;
        Ok(DriveOutcome::Reached)
    }

    /// `DRIVE_SYNC=list`: `files.list` of the `appDataFolder`, every page, each paid for
    /// as it is asked.
    pub(super) async fn list_drive(
        &self,
        run: &Run<'_>,
        grant: &Grant,
        token: &AccessToken,
        prepaid: &Prepaid,
    ) -> Result<DriveOutcome, Attempt<DriveError>> {
        let listing = self
            .retrying(
                run,
                None,
                || {
                    self.drive.list_app_data(token, || async {
                        // Each grant's work ends with the run: no page past the deadline,
                        // nor one the day's budget cannot pay for.
                        if run.interrupted() {
                            return false;
                        }
                        run.counters.bump(Count::drive_calls);
                        self.google_call(run, GoogleCall::FilesList, prepaid).await
                    })
                },
                |e| disposition(Failure::Drive(e)),
            )
            .await?;
        if listing.truncated {
            tracing::warn!(sub = %grant.sub, pages = listing.pages, "Drive listing truncated");
        }
        Ok(DriveOutcome::Synced {
            files: listing.files,
            truncated: listing.truncated,
        })
    }
}

//! The builder's Event Hubs parts: the container of large payloads, the `eventhub` function and
//! the `replay` timer on top of the one receiver, the subscription URL checked at start-up.

use std::sync::Arc;

use azure_core::http::Transport;

use super::{Builder, StartError};
use crate::eventhub::large_payload::PayloadStore;
use crate::eventhub::payload::Limits;
use crate::eventhub::spool::Spool;
use crate::functions::eventhub::EventHubFunction;
use crate::functions::replay::ReplayTimer;
use crate::graph::subscriptions::eventhub_url::EventHubUrl;
use crate::receiver::Receiver;

impl Builder {
    /// The container of large Event Hubs payloads, when `EVENTHUB_PAYLOAD_CONTAINER_URL` is set:
    /// a SAS URL is used as is, a plain https URL with the app's credential.
    pub fn payload_store(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<Arc<PayloadStore>>, StartError> {
        let Some(url) = &self.config.event_hub.payload_container_url else {
            return Ok(None);
        };
        let credential = if url.contains('?') {
            None
        } else {
            Some(self.azure_credential(http)?)
        };
        let transport = Some(Transport::new(Arc::new(http.clone())));
        Ok(Some(Arc::new(PayloadStore::new(
            url, credential, transport,
        )?)))
    }

    /// `EVENTHUB_NOTIFICATION_URL`, when set, must be one of Graph's `EventHub:` forms.
    pub(super) fn check_event_hub_url(&self) -> Result<(), StartError> {
        if let Some(url) = &self.config.event_hub.notification_url {
            EventHubUrl::parse(url).map_err(StartError::EventHubUrl)?;
        }
        Ok(())
    }

    /// The `eventhub` function and the `replay` timer, both on `receiver`; the spool's old
    /// temporary files are swept in the background.
    pub(super) fn event_hub_functions(
        &self,
        receiver: &Arc<Receiver>,
        payloads: Option<Arc<PayloadStore>>,
    ) -> (Arc<EventHubFunction>, Arc<ReplayTimer>) {
        let spool = Spool::new(&self.config.event_hub.spool_dir);
        spool.sweep_in_background();
        let eventhub = Arc::new(EventHubFunction {
            receiver: receiver.clone(),
            spool,
            limits: Limits::default(),
        });
        let replay = Arc::new(ReplayTimer {
            archive: receiver.archive.clone(),
            keys: receiver.keys.clone(),
            payloads,
            eventhub: eventhub.clone(),
        });
        (eventhub, replay)
    }
}

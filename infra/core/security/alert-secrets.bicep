// The emergency alert routes' secrets in the app's Key Vault: the Teams Workflows webhook URLs
// (their query string is the workflow's signature), the generic webhook URLs and the generic
// webhooks' HMAC key. Each secret exists only when its value is given; values are never output.

@description('Name of the existing Key Vault.')
param keyVaultName string

@description('ALERT_TEAMS_WEBHOOK_URLS (comma list); empty = no secret.')
@secure()
param teamsWebhookUrls string = ''

@description('ALERT_WEBHOOK_URLS (comma list); empty = no secret.')
@secure()
param webhookUrls string = ''

@description('ALERT_WEBHOOK_SECRET; empty = no secret.')
@secure()
param webhookSecret string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource teamsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrls)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a conditional resource
  parent: vault
  name: 'alert-teams-webhook-urls'
  properties: {
    value: teamsWebhookUrls
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource webhookUrlsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(webhookUrls)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a conditional resource
  parent: vault
  name: 'alert-webhook-urls'
  properties: {
    value: webhookUrls
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource webhookKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(webhookSecret)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a conditional resource
  parent: vault
  name: 'alert-webhook-secret'
  properties: {
    value: webhookSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

// Versionless secret URIs (a Key Vault reference follows the latest version); '' when absent.
output teamsWebhookUrlsUri string = empty(teamsWebhookUrls) ? '' : '${vault.properties.vaultUri}secrets/alert-teams-webhook-urls'
output webhookUrlsUri string = empty(webhookUrls) ? '' : '${vault.properties.vaultUri}secrets/alert-webhook-urls'
output webhookSecretUri string = empty(webhookSecret) ? '' : '${vault.properties.vaultUri}secrets/alert-webhook-secret'

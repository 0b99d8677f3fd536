// Key Vault with Azure RBAC authorization. It holds the notification certificate (created or
// imported with the Azure CLI after provisioning: ARM has no certificate resource) and the secrets
// the Function App reads through Key Vault references (the Graph clientState, and the Entra app's
// client secret when one is used).

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string = resourceGroup().location
param tags object = {}

@description('Days a deleted vault, certificate or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Name of the secret holding the Graph clientState.')
param clientStateSecretName string = 'notification-client-state'

@description('The Graph clientState; stored as a secret, never output.')
@secure()
param clientStateValue string

@description('Name of the secret holding the Entra app client secret.')
param graphClientSecretName string = 'graph-client-secret'

@description('Client secret of the Entra app registration; empty = no secret is stored (managed or workload identity).')
@secure()
param graphClientSecretValue string = ''

@description('Name of the secret holding the Teams bot\'s client secret.')
param botClientSecretName string = 'bot-client-secret'

@description('Client secret of the bot\'s Entra app; empty = none is stored (the bot is the managed identity).')
@secure()
param botClientSecretValue string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Always on: nobody (nor a stolen deployment credential) can destroy the decryption keys for
    // good before the retention period ends. A deleted vault keeps its name reserved until then.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource clientStateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: clientStateSecretName
  properties: {
    value: clientStateValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource graphClientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(graphClientSecretValue)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a conditional resource
  parent: vault
  name: graphClientSecretName
  properties: {
    value: graphClientSecretValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource botClientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(botClientSecretValue)) {
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the properties of a conditional resource
  parent: vault
  name: botClientSecretName
  properties: {
    value: botClientSecretValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

output name string = vault.name
output id string = vault.id
output vaultUri string = vault.properties.vaultUri
// Versionless secret URIs: a Key Vault reference then follows the latest version.
output clientStateSecretUri string = '${vault.properties.vaultUri}secrets/${clientStateSecret.name}'
output graphClientSecretUri string = empty(graphClientSecretValue) ? '' : '${vault.properties.vaultUri}secrets/${graphClientSecretName}'
output botClientSecretUri string = empty(botClientSecretValue) ? '' : '${vault.properties.vaultUri}secrets/${botClientSecretName}'

// teams-notifications: the Azure resources for the `handler` custom handler.
//
// Resource-group scoped, so the same file deploys with `azd provision` (azd asks for, or reads
// AZURE_RESOURCE_GROUP) and with `az deployment group create`. Conventions follow Microsoft's azd
// Flex Consumption templates (resource token, abbreviations, user-assigned identity, identity-based
// host storage, role assignments by built-in role id), with local modules instead of registry
// modules so that every file can be parsed and scanned offline.
//
// Every app setting of the configuration contract (the README's "Configuration") that has a value in
// Azure is set here; see docs/deploy.md for the ones left out on purpose.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment (the azd environment name); part of the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Location of every resource. Flex Consumption exists in a subset of regions: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

@description('FlexConsumption (FC1, recommended) or Consumption (Linux Consumption, Y1).')
@allowed([
  'FlexConsumption'
  'Consumption'
])
param hostingPlan string = 'FlexConsumption'

@description('Entra tenant whose Teams notifications are accepted (GRAPH_TENANT_ID; a comma list is allowed). Empty: the tenant of the deployment.')
param graphTenantId string = ''

@description('Application (client) id of the Entra app registration that owns the Graph subscriptions (GRAPH_CLIENT_ID). Empty: the Function App\'s managed identity is that application.')
param graphClientId string = ''

@description('Client secret of that app registration (GRAPH_CLIENT_SECRET), stored in Key Vault. Empty: the renewer uses the managed identity.')
@secure()
param graphClientSecret string = ''

@description('The secret clientState given to Graph with every subscription (NOTIFICATION_CLIENT_STATE). 16-128 characters; keep it and pass the same value on every deployment.')
@secure()
@minLength(16)
@maxLength(128)
param notificationClientState string

@description('Read NOTIFICATION_CLIENT_STATE (and GRAPH_CLIENT_SECRET) through Key Vault references (true) or set the values directly as app settings (false).')
param secretsAsKeyVaultReferences bool = true

@description('A host key of the Function App that Graph sends as `?code=` (appended to NOTIFICATION_URL and LIFECYCLE_NOTIFICATION_URL). Choose it yourself, URL-safe (for example `openssl rand -hex 32`), and set the same value on the app with `az functionapp keys set` after the first publish; empty = the URLs carry no key.')
@secure()
param functionKey string = ''

@description('Name of the notification certificate in Key Vault (NOTIFICATION_CERTIFICATE_NAME).')
param notificationCertificateName string = 'graph-notifications'

@description('Blob container of the archive (ARCHIVE_CONTAINER).')
param archiveContainerName string = 'teams-notifications'

@description('Desired subscriptions file (SUBSCRIPTIONS_FILE), relative to the app root, where scripts/package puts it.')
param subscriptionsFile string = 'subscriptions.json'

@description('NCRONTAB schedule of the renew timer (RENEW_SCHEDULE).')
param renewSchedule string = '0 */30 * * * *'

@description('Renew a subscription when less than this share of its lifetime remains (RENEW_WHEN_REMAINING, 0..1).')
param renewWhenRemaining string = '0.5'

@description('NCRONTAB schedule of the replay timer (REPLAY_SCHEDULE): finishes quarantined items and spooled Event Hubs batches.')
param replaySchedule string = '0 */10 * * * *'

@description('Deliver Graph notifications through Azure Event Hubs: a namespace, a hub, a consumer group, the role assignments and the eventhub function\'s settings. Off = webhook only (the eventhub function is disabled).')
param eventHubsEnabled bool = false

@description('Hub Graph writes to (EVENTHUB_NAME).')
param eventHubName string = 'graph-notifications'

@description('Consumer group of the eventhub function (EVENTHUB_CONSUMER_GROUP).')
param eventHubConsumerGroup string = 'teams-notifications'

@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 4

@description('Object id of the Microsoft Graph Change Tracking service principal (appId 0bf30f3b-4a52-48df-9a82-234910c4a086) in this tenant; gets Azure Event Hubs Data Sender on the hub. Empty = assign it by hand (docs/deploy.md).')
param graphChangeTrackingPrincipalId string = ''

@description('Container URL of the blob store Graph leaves payloads over 1 MB in (EVENTHUB_PAYLOAD_CONTAINER_URL; the app\'s identity needs Storage Blob Data Reader on it). Empty = such items are quarantined until it is set.')
param eventHubPayloadContainerUrl string = ''

@description('Folder of the spool, where an Event Hubs batch the archive could not take on its last try is kept until the replay timer archives it (EVENTHUB_SPOOL_DIR). /home is the app\'s persistent share on Linux Consumption.')
param eventHubSpoolDir string = '/home/data/teams-notifications/spool'

@description('Emergency alerts: Teams Workflows webhook URLs (ALERT_TEAMS_WEBHOOK_URLS, comma list), stored in Key Vault. Empty = none.')
@secure()
param alertTeamsWebhookUrls string = ''

@description('Emergency alerts: generic HTTPS webhook URLs (ALERT_WEBHOOK_URLS, comma list), stored in Key Vault. Empty = none.')
@secure()
param alertWebhookUrls string = ''

@description('Emergency alerts: HMAC-SHA256 key of the generic webhooks\' signature (ALERT_WEBHOOK_SECRET, at least 16 characters), stored in Key Vault.')
@secure()
param alertWebhookSecret string = ''

@description('Emergency alerts: the bot\'s conversation, `serviceUrl|conversationId` (ALERT_BOT_CONVERSATION). Empty = none.')
param alertBotConversation string = ''

@description('Emergency alerts: what raises an alert (ALERT_ON, comma list of emergencyCallEvent.callStarted, .callEnded, .rosterUpdated, .other).')
param alertOn string = 'emergencyCallEvent.callStarted'

@description('Emergency alerts: hours a failing route is retried before the alert expires (ALERT_RETRY_HOURS).')
param alertRetryHours string = '24'

@description('Deploy the Teams bot (Azure Bot with the Teams channel) that records meeting events and subscribes meetings as they start. Needs functionKey.')
param enableBot bool = false

@description('Application (client) id of the bot\'s single-tenant Entra app registration (BOT_APP_ID). Empty: the Function App\'s managed identity is the bot (UserAssignedMSI, no secret).')
param botAppId string = ''

@description('Client secret of that bot app registration (BOT_CLIENT_SECRET), stored in Key Vault. Empty with botAppId: the bot cannot call the Bot APIs (events are still recorded).')
@secure()
param botClientSecret string = ''

@description('Minutes a meeting\'s call-event subscription outlives the meeting\'s end (MEETING_SUBSCRIPTION_GRACE_MIN).')
param meetingSubscriptionGraceMin string = '30'

@description('Link the app registration (graphClientId, option A; ignored without one, since managed identities cannot call metered APIs) to this Azure subscription for Microsoft Graph\'s metered APIs (Microsoft.GraphServices/accounts; Microsoft\'s "Enable metered APIs and services in Microsoft Graph"): needed by /chats/getAllMessages and the other metered Teams resources with a payment model. The deployer needs Contributor on the subscription and must own the app registration.')
param graphBillingEnabled bool = false

@description('Log level of the handler (RUST_LOG).')
param rustLog string = 'info'

@description('Object id of the deploying user or service principal; gets Key Vault Certificates Officer and Storage Blob Data Contributor. Empty = none.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

@description('Replication of the storage account that holds the archive.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Also give the host the queue and table endpoints and roles (only for queue, blob or durable triggers).')
param hostStorageQueueAndTable bool = false

@description('Flex Consumption: version of the `custom` runtime (`az functionapp list-flexconsumption-runtimes --location <region> --runtime custom`).')
param customRuntimeVersion string = '1.0'

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Optional explicit names; empty = derived from the resource token.
param functionAppName string = ''
param appServicePlanName string = ''
param storageAccountName string = ''
param keyVaultName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param identityName string = ''
param eventHubNamespaceName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(resourceToken, 7)}'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
  location: location
  tags: tags
}

module storage './core/storage/storage-account.bicep' = {
  name: 'storage'
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    containers: [
      {
        name: deploymentContainerName
      }
      {
        name: archiveContainerName
      }
    ]
  }
}

module keyVault './core/security/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    clientStateValue: notificationClientState
    graphClientSecretValue: graphClientSecret
    botClientSecretValue: botClientSecret
  }
}

module monitoring './core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    archiveContainerName: archiveContainerName
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    managedIdentityPrincipalId: identity.properties.principalId
    hostStorageQueueAndTable: hostStorageQueueAndTable
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
  }
}

module eventHubs './core/messaging/eventhubs.bicep' = if (eventHubsEnabled) {
  name: 'eventhubs'
  params: {
    namespaceName: !empty(eventHubNamespaceName) ? eventHubNamespaceName : '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    hubName: eventHubName
    consumerGroupName: eventHubConsumerGroup
    partitionCount: eventHubPartitionCount
    graphChangeTrackingPrincipalId: graphChangeTrackingPrincipalId
    managedIdentityPrincipalId: identity.properties.principalId
  }
}

// Metered Graph APIs bill the Azure subscription linked to the application that calls them: the
// app registration of option A. Microsoft's "Enable metered APIs and services in Microsoft Graph"
// says managed identities cannot call metered APIs, so option B gets no link (docs/deploy.md).
var graphBillingLinked = graphBillingEnabled && !empty(graphClientId)
resource graphBilling 'Microsoft.GraphServices/accounts@2023-04-13' = if (graphBillingLinked) {
  name: 'graph-billing-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    appId: first(split(graphClientId, ','))
  }
}

var clientStateReference = '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.clientStateSecretUri})'
var clientStateSetting = secretsAsKeyVaultReferences ? clientStateReference : notificationClientState

var graphSecretReference = '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.graphClientSecretUri})'
var graphSecretValue = secretsAsKeyVaultReferences ? graphSecretReference : graphClientSecret
var graphSecretSetting = {
  GRAPH_CLIENT_SECRET: graphSecretValue
}
var graphSecretSettings = empty(graphClientSecret) ? {} : graphSecretSetting

module alertSecrets './core/security/alert-secrets.bicep' = {
  name: 'alert-secrets'
  params: {
    keyVaultName: keyVault.outputs.name
    teamsWebhookUrls: alertTeamsWebhookUrls
    webhookUrls: alertWebhookUrls
    webhookSecret: alertWebhookSecret
  }
}

// A Key Vault reference (or the value itself), only for the alert secrets that are given.
var alertTeamsSetting = secretsAsKeyVaultReferences ? '@Microsoft.KeyVault(SecretUri=${alertSecrets.outputs.teamsWebhookUrlsUri})' : alertTeamsWebhookUrls
var alertWebhookUrlsSetting = secretsAsKeyVaultReferences ? '@Microsoft.KeyVault(SecretUri=${alertSecrets.outputs.webhookUrlsUri})' : alertWebhookUrls
var alertWebhookSecretSetting = secretsAsKeyVaultReferences ? '@Microsoft.KeyVault(SecretUri=${alertSecrets.outputs.webhookSecretUri})' : alertWebhookSecret
var alertTeamsSettings = empty(alertTeamsWebhookUrls) ? {} : {
  ALERT_TEAMS_WEBHOOK_URLS: alertTeamsSetting
}
var alertWebhookUrlsSettings = empty(alertWebhookUrls) ? {} : {
  ALERT_WEBHOOK_URLS: alertWebhookUrlsSetting
}
var alertWebhookSecretSettings = empty(alertWebhookSecret) ? {} : {
  ALERT_WEBHOOK_SECRET: alertWebhookSecretSetting
}
var alertSecretSettings = union(alertTeamsSettings, alertWebhookUrlsSettings, alertWebhookSecretSettings)

// The configuration contract (the README's "Configuration"), wired to the resources above. NOTIFICATION_URL and
// LIFECYCLE_NOTIFICATION_URL are added by the functions module, which knows the app's host name.
var contractSettings = {
  AZURE_CLIENT_ID: identity.properties.clientId
  GRAPH_TENANT_ID: !empty(graphTenantId) ? graphTenantId : tenant().tenantId
  GRAPH_CLIENT_ID: !empty(graphClientId) ? graphClientId : identity.properties.clientId
  NOTIFICATION_CLIENT_STATE: clientStateSetting
  KEY_VAULT_URL: keyVault.outputs.vaultUri
  NOTIFICATION_CERTIFICATE_NAME: notificationCertificateName
  ARCHIVE_ACCOUNT_URL: 'https://${storage.outputs.name}.blob.${environment().suffixes.storage}'
  ARCHIVE_CONTAINER: archiveContainerName
  SUBSCRIPTIONS_FILE: subscriptionsFile
  RENEW_SCHEDULE: renewSchedule
  RENEW_WHEN_REMAINING: renewWhenRemaining
  ALERT_BOT_CONVERSATION: alertBotConversation
  ALERT_ON: alertOn
  ALERT_RETRY_HOURS: alertRetryHours
  RUST_LOG: rustLog
  // One JSON object per line: what Application Insights ingests best.
  LOG_FORMAT: 'json'
}

// Event Hubs delivery. The trigger's connection `EVENTHUB` is identity-based: the host reads
// EVENTHUB__fullyQualifiedNamespace with the user-assigned identity named by EVENTHUB__clientId.
// Without Event Hubs the eventhub function is disabled, so the host never resolves its settings.
var eventHubTenant = !empty(graphTenantId) ? first(split(graphTenantId, ',')) : tenant().tenantId
var eventHubNotificationUrl = eventHubsEnabled ? 'EventHub:https://${eventHubs.outputs.fullyQualifiedNamespace}/eventhubname/${eventHubs.outputs.hubName}?tenantId=${eventHubTenant}' : ''
var eventHubSettingsOn = eventHubsEnabled ? {
  EVENTHUB__fullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
  EVENTHUB__credential: 'managedidentity'
  EVENTHUB__clientId: identity.properties.clientId
  EVENTHUB_NAME: eventHubs.outputs.hubName
  EVENTHUB_CONSUMER_GROUP: eventHubs.outputs.consumerGroupName
  EVENTHUB_NOTIFICATION_URL: eventHubNotificationUrl
  EVENTHUB_SPOOL_DIR: eventHubSpoolDir
} : {
  'AzureWebJobs.eventhub.Disabled': 'true'
}
var eventHubPayloadSettings = empty(eventHubPayloadContainerUrl) ? {} : {
  EVENTHUB_PAYLOAD_CONTAINER_URL: eventHubPayloadContainerUrl
}
var replaySettings = {
  REPLAY_SCHEDULE: replaySchedule
}
// The Teams bot (BOT_*): the Entra app given, or the managed identity.
var botId = !empty(botAppId) ? botAppId : identity.properties.clientId
var botSecretReference = '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.botClientSecretUri})'
var botSecretValue = secretsAsKeyVaultReferences ? botSecretReference : botClientSecret
var botSecretSetting = {
  BOT_CLIENT_SECRET: botSecretValue
}
var botSettingsOn = union({
  BOT_APP_ID: botId
  BOT_TENANT_ID: tenant().tenantId
  BOT_OPENID_METADATA: 'https://login.botframework.com/v1/.well-known/openidconfiguration'
  MEETING_SUBSCRIPTION_GRACE_MIN: meetingSubscriptionGraceMin
}, empty(botClientSecret) ? {} : botSecretSetting)
var botSettings = enableBot ? botSettingsOn : {}
var handlerSettings = union(contractSettings, graphSecretSettings, alertSecretSettings, botSettings, eventHubSettingsOn, eventHubPayloadSettings, replaySettings)

module functionApp './core/host/functions.bicep' = {
  name: 'functionapp'
  params: {
    name: appName
    planName: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: 'handler'
    hostingPlan: hostingPlan
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appSettings: handlerSettings
    functionKey: functionKey
    hostStorageQueueAndTable: hostStorageQueueAndTable
    customRuntimeVersion: customRuntimeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  // The roles must exist before the app starts and resolves its Key Vault references.
  dependsOn: [
    rbac
  ]
}

module bot './app/bot.bicep' = if (enableBot) {
  name: 'bot'
  params: {
    name: '${abbrs.botServices}${resourceToken}'
    tags: tags
    functionAppHostName: functionApp.outputs.defaultHostName
    functionKey: functionKey
    botAppId: botId
    botAppType: !empty(botAppId) ? 'SingleTenant' : 'UserAssignedMSI'
    identityResourceId: identity.id
  }
}

// Outputs (upper case: azd stores them in the environment). No secret is output: the URLs are
// given without the `?code=` key.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.vaultUri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_DEPLOYMENT_CONTAINER string = deploymentContainerName
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output GRAPH_CLIENT_ID string = !empty(graphClientId) ? graphClientId : identity.properties.clientId
output NOTIFICATION_CERTIFICATE_NAME string = notificationCertificateName
output ARCHIVE_CONTAINER string = archiveContainerName
output NOTIFICATION_URL string = functionApp.outputs.notificationUrl
output LIFECYCLE_NOTIFICATION_URL string = functionApp.outputs.lifecycleNotificationUrl
output HOSTING_PLAN string = hostingPlan
output EVENTHUB_NOTIFICATION_URL string = eventHubNotificationUrl
output BOT_APP_ID string = enableBot ? botId : ''
output GRAPH_BILLING_ACCOUNT_ID string = graphBillingLinked ? graphBilling.id : ''


// The hosting plan and the Function App running the `handler` custom handler on Linux.
//
// FlexConsumption (FC1, default): the runtime is declared in functionAppConfig.runtime
// (name `custom`), the package is deployed to a blob container with the managed identity, and the
// app settings FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION / WEBSITE_RUN_FROM_PACKAGE
// are not allowed (the platform rejects them).
//
// Consumption (Y1, Linux): the classic settings apply (FUNCTIONS_WORKER_RUNTIME=custom,
// FUNCTIONS_EXTENSION_VERSION=~4) and the app runs from the package blob
// `<deployment container>/<packageBlobName>`, fetched with the managed identity
// (WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID), so no storage key is ever needed.

param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('The azd service name; azd finds the app by the tag `azd-service-name`.')
param serviceName string = 'handler'

@allowed([
  'FlexConsumption'
  'Consumption'
])
param hostingPlan string = 'FlexConsumption'

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

param storageAccountName string
param deploymentContainerName string

@description('Linux Consumption only: the blob (in the deployment container) the app runs from.')
param packageBlobName string = 'handler.zip'

param applicationInsightsName string

@description('App settings of the application itself (merged with the host settings built here). Secure: it may hold secret values, which must not appear in the deployment history.')
@secure()
param appSettings object = {}

@description('Host key Graph sends as `?code=` on the notification and lifecycle URLs; empty = none.')
@secure()
param functionKey string = ''

@description('Point the host at the queue and table endpoints too (not needed by HTTP and timer triggers).')
param hostStorageQueueAndTable bool = false

@description('Flex Consumption: version of the `custom` runtime.')
param customRuntimeVersion string = '1.0'

@description('Flex Consumption: most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory per instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var isFlex = hostingPlan == 'FlexConsumption'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}

var consumptionSku = {
  name: 'Y1'
  tier: 'Dynamic'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: isFlex ? flexSku : consumptionSku
  properties: {
    reserved: true
  }
}

var blobEndpoint = storage.properties.primaryEndpoints.blob

var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var queueAndTableEndpoints = {
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
}

var queueAndTableSettings = hostStorageQueueAndTable ? queueAndTableEndpoints : {}

// Linux Consumption only; Flex Consumption refuses these settings.
var linuxConsumptionSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  WEBSITE_RUN_FROM_PACKAGE: '${blobEndpoint}${deploymentContainerName}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

var consumptionSettings = isFlex ? {} : linuxConsumptionSettings

var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${blobEndpoint}${deploymentContainerName}'
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  runtime: {
    name: 'custom'
    version: customRuntimeVersion
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: identityId
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: isFlex ? flexConfig : null
  }
}

var notificationUrl = 'https://${app.properties.defaultHostName}/api/notifications'
var lifecycleNotificationUrl = 'https://${app.properties.defaultHostName}/api/lifecycle'
var keyQuery = empty(functionKey) ? '' : '?code=${functionKey}'

var urlSettings = {
  NOTIFICATION_URL: '${notificationUrl}${keyQuery}'
  LIFECYCLE_NOTIFICATION_URL: '${lifecycleNotificationUrl}${keyQuery}'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(appSettings, urlSettings, queueAndTableSettings, consumptionSettings, hostSettings)
}

// Deployments authenticate with Microsoft Entra ID; basic (publishing profile) credentials are off.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
// Without the `?code=` key: outputs are visible in the deployment history.
output notificationUrl string = notificationUrl
output lifecycleNotificationUrl string = lifecycleNotificationUrl

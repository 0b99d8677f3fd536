// Graph's Event Hubs delivery: a namespace (Entra ID only, no shared access keys), one hub, the
// handler's consumer group, and the two role assignments the path needs:
// - the "Microsoft Graph Change Tracking" service principal (appId
//   0bf30f3b-4a52-48df-9a82-234910c4a086, one object per tenant) sends: Azure Event Hubs Data
//   Sender on the hub (Microsoft's "Receive change notifications through Azure Event Hubs");
// - the Function App's identity reads through the eventHubTrigger: Azure Event Hubs Data
//   Receiver on the hub.

param namespaceName string
param location string = resourceGroup().location
param tags object = {}

@description('Name of the hub Graph writes to (EVENTHUB_NAME).')
param hubName string = 'graph-notifications'

@description('Consumer group of the eventHubTrigger (EVENTHUB_CONSUMER_GROUP).')
param consumerGroupName string = 'teams-notifications'

@description('Partitions of the hub: the most instances that read it at once.')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Days an event stays in the hub (Standard tier: 1 to 7).')
@minValue(1)
@maxValue(7)
param retentionDays int = 7

@allowed([
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

@description('Object id of the Microsoft Graph Change Tracking service principal in this tenant (`az ad sp show --id 0bf30f3b-4a52-48df-9a82-234910c4a086 --query id -o tsv`). Empty = assign the role by hand (docs/deploy.md).')
param graphChangeTrackingPrincipalId string = ''

@description('Principal (object) id of the Function App\'s user-assigned managed identity.')
param managedIdentityPrincipalId string

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
    capacity: 1
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: retentionDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
}

resource graphSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(graphChangeTrackingPrincipalId)) {
  name: guid(hub.id, graphChangeTrackingPrincipalId, roles.eventHubsDataSender)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: graphChangeTrackingPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, managedIdentityPrincipalId, roles.eventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output namespaceName string = namespace.name
// `https://<ns>.servicebus.windows.net:443/` -> the host name (national clouds included).
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output hubName string = hub.name
output consumerGroupName string = consumerGroup.name

// The Azure Bot resource of the Teams bot that receives real-time meeting events (Microsoft's
// "Meeting apps APIs": meetingStart, meetingEnd, participant join and leave) and calls the Bot
// APIs. Single-tenant: either the Entra app registration given as botAppId (SingleTenant, with a
// client secret in Key Vault) or, when none is given, the Function App's user-assigned managed
// identity (UserAssignedMSI: no secret at all).
//
// The messaging endpoint is the `messages` function with its function key (`?code=`): the host
// turns away every request without the key before the handler parses a byte, and the handler then
// checks the Bot Connector's JWT (see ARCHITECTURE.md for the choice).

@description('Azure Bot resource name (the bot handle), globally unique.')
param name string

param tags object = {}

@description('Display name shown in Teams.')
param displayName string = 'Meeting recorder'

@description('Host name of the Function App (its defaultHostName).')
param functionAppHostName string

@description('The function key Bot Connector requests carry as `?code=`.')
@secure()
param functionKey string

@description('Application (client) id of the bot: the Entra app (SingleTenant) or the managed identity (UserAssignedMSI).')
param botAppId string

@description('SingleTenant (an Entra app registration) or UserAssignedMSI (the Function App\'s managed identity).')
@allowed([
  'SingleTenant'
  'UserAssignedMSI'
])
param botAppType string

@description('Resource id of the user-assigned identity (UserAssignedMSI only).')
param identityResourceId string = ''

@description('F0 (free) or S1 (standard). Teams is a standard channel: messages to it are free on either.')
@allowed([
  'F0'
  'S1'
])
param sku string = 'F0'

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: displayName
    endpoint: 'https://${functionAppHostName}/api/messages?code=${functionKey}'
    msaAppId: botAppId
    msaAppType: botAppType
    msaAppTenantId: tenant().tenantId
    msaAppMSIResourceId: botAppType == 'UserAssignedMSI' ? identityResourceId : null
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      enableCalling: false
    }
  }
}

output name string = bot.name
output botAppId string = botAppId
